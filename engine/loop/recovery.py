"""Engine recovery for `onenode serve`: the states the served engine goes through when a rank dies
or a step hangs, and the loop that rebuilds it. Pure: the clock, the sleep and the engine builder
are injected, so unit tests drive it with fakes.

    serving --rank died / stuck step--> degraded --rebuild starts--> recovering
    recovering --engine rebuilt (a first step passed every stage)--> serving (restarts += 1)
    recovering --attempt failed or timed out, budget left--> recovering (after a backoff)
    recovering --recovery budget spent--> failed (still retrying, every backoff_cap_s)
    any --sticky device error in this process / --no-recovery--> failed for good (process exits)

The budget (--recovery-timeout) belongs to a crash loop, not to an attempt: a rebuilt engine that
fails again before it served STABLE (the budget's length) continues the same loop, with the same
deadline and a growing backoff, so rebuild -> "serving" -> stuck -> rebuild cannot flap forever.
While not serving, /health and every request answer 503 with the reason and Retry-After; the
server keeps its port open in every state.
"""

import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from onenode.errors import ConfigError

log = logging.getLogger("onenode.recovery")

BACKOFF_START_S = 1.0
# Errors after which a CUDA context is poisoned for good: only a new process clears them.
_STICKY = re.compile(r"CUDA error|device-side assert|illegal memory access|CUBLAS_STATUS_"
                     r"|unspecified launch failure|CUDNN_STATUS_", re.IGNORECASE)


def sticky_device_error(text: str) -> bool:
    return bool(_STICKY.search(text or ""))


class EngineState(str, Enum):
    SERVING = "serving"
    DEGRADED = "degraded"
    RECOVERING = "recovering"
    FAILED = "failed"


@dataclass(frozen=True)
class RecoveryConfig:
    enabled: bool = True
    timeout_s: float = 300.0  # --recovery-timeout: the budget of one crash loop
    retry_after_s: int = 10  # what 503 answers tell clients while the engine rebuilds
    attempt_timeout_s: float | None = None  # one rebuild's own deadline (default: the budget)
    backoff_cap_s: float = 60.0  # the longest wait between attempts, and the pace once failed

    def __post_init__(self):
        if self.timeout_s <= 0:
            raise ConfigError(f"--recovery-timeout {self.timeout_s:g} must be > 0 seconds; use "
                              f"--no-recovery to stay down after a failure")

    @property
    def attempt_s(self) -> float:
        return self.attempt_timeout_s or self.timeout_s


class Recovery:
    """The state machine; one instance per served engine, read by /health and /metrics."""

    def __init__(self, config: RecoveryConfig, clock: Callable[[], float] = time.monotonic):
        self.config, self.clock = config, clock
        self.state = EngineState.SERVING
        self.reason: str | None = None
        self.final = False  # failed for good: the process exits
        self.restarts = 0
        self.attempts = 0
        self.failures = 0  # consecutive, within one crash loop: sets the backoff
        self.deadline: float | None = None
        self.last_rebuilt: float | None = None

    @property
    def serving(self) -> bool:
        return self.state is EngineState.SERVING

    def fail(self, reason: str) -> None:
        """A rank died or a step was stuck: requests in flight have been failed."""
        self.reason, self.attempts = reason, 0
        if not self.config.enabled:
            self.give_up(f"recovery is off: {reason}")
            return
        now = self.clock()
        stable = self.last_rebuilt is None or now - self.last_rebuilt >= self.config.timeout_s
        if self.deadline is None or stable:
            self.deadline, self.failures = now + self.config.timeout_s, 0
        else:
            self.failures += 1
            log.warning("engine failed again %.0fs after its rebuild: same crash loop, %.0fs of "
                        "the recovery budget left", now - self.last_rebuilt, self.time_left())
        if self.time_left() <= 0:
            self._spent(reason)
            return
        self._to(EngineState.DEGRADED, f"engine degraded: {reason}")

    def grow_back(self, reason: str) -> None:
        """A planned rebuild (a degraded engine grows back): a fresh budget, no backoff."""
        self.reason, self.attempts, self.failures = reason, 0, 0
        self.deadline = self.clock() + self.config.timeout_s
        self._to(EngineState.RECOVERING, f"engine recovering: {reason}")

    def give_up(self, reason: str) -> None:
        """Failed for good (recovery off, a poisoned device): only a new process can serve."""
        self.reason, self.final = reason, True
        self._to(EngineState.FAILED, f"engine failed: {reason}")

    def start_attempt(self) -> None:
        self.attempts += 1
        if self.state is not EngineState.FAILED:
            self._to(EngineState.RECOVERING, f"engine recovering: attempt {self.attempts}, "
                                             f"{self.time_left():.0f}s of the budget left")

    def rebuilt(self) -> None:
        self.restarts += 1
        self.reason, self.last_rebuilt = None, self.clock()
        self._to(EngineState.SERVING, f"engine serving again (restart {self.restarts}, "
                                      f"{self.attempts} attempt(s))")

    def attempt_failed(self, error: str) -> None:
        self.failures += 1
        log.warning("engine recovery attempt %d failed: %s", self.attempts, error)
        if self.state is not EngineState.FAILED and self.time_left() <= 0:
            self._spent(error)

    def backoff_s(self) -> float:
        """The wait before the next attempt: doubling per failure, up to the cap."""
        if self.state is EngineState.FAILED:
            return self.config.backoff_cap_s
        return min(self.config.backoff_cap_s, BACKOFF_START_S * 2 ** max(0, self.failures - 1))

    def retry_after_s(self) -> int | None:
        """What a 503 tells clients; None when only a restart of the server helps."""
        if self.serving or self.final:
            return None
        if self.state is EngineState.FAILED:
            return max(1, int(self.config.backoff_cap_s))
        return self.config.retry_after_s

    def time_left(self) -> float:
        return 0.0 if self.deadline is None else max(0.0, self.deadline - self.clock())

    def describe(self) -> str:
        """The one line /health and refused requests carry."""
        if self.final:
            return f"the engine is dead ({self.reason}); restart `onenode serve`"
        if self.state is EngineState.FAILED:
            return (f"the engine failed ({self.reason}); it still retries every "
                    f"{self.config.backoff_cap_s:.0f}s: bring the missing node back or restart "
                    f"the server")
        return (f"the engine is {self.state.value} ({self.reason}); it is rebuilding itself, "
                f"retry in {self.config.retry_after_s}s")

    def _spent(self, error: str) -> None:
        self.reason = (f"recovery did not succeed within {self.config.timeout_s:.0f}s "
                       f"(last error: {error})")
        self._to(EngineState.FAILED, f"engine failed: {self.reason}; retrying every "
                                     f"{self.config.backoff_cap_s:.0f}s")

    def _to(self, state: EngineState, line: str) -> None:
        self.state = state
        (log.error if state is EngineState.FAILED else log.warning)(line)


def rebuild(recovery: Recovery, wait_for_devices: Callable[[float], None],
            build: Callable[[float], object], stopping: Callable[[], bool] = lambda: False,
            sleep: Callable[[float], None] = time.sleep):
    """Attempts until an engine is built (or `stopping`): wait, bounded, until the cluster has the
    devices, then build the engine within the attempt's deadline (`build(timeout_s)` must raise
    when it passes). The build gets the whole deadline, not what the wait left: a build cut short
    would keep loading in the background while the next one starts. Past the budget the state is
    failed and attempts go on, slower."""
    while not stopping():
        recovery.start_attempt()
        limit = recovery.config.attempt_s
        try:
            wait_for_devices(limit)
            log.warning("engine recovering: devices available, rebuilding workers, weights "
                        "and KV cache")
            engine = build(limit)
        except Exception as exc:  # noqa: BLE001 - any failed attempt is retried
            recovery.attempt_failed(f"{type(exc).__name__}: {str(exc)[:300]}")
            sleep(recovery.backoff_s())
            continue
        recovery.rebuilt()
        return engine
    return None
