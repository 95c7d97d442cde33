"""Engine recovery for `onenode serve`: the states the served engine goes through when a rank dies
or a step hangs, and the loop that rebuilds it. Pure: the clock, the sleep and the engine builder
are injected, so unit tests drive it with fakes.

    serving --rank died / step timeout--> degraded --rebuild starts--> recovering
    recovering --engine rebuilt--> serving (restarts += 1)
    recovering --attempt failed, time left--> recovering (next attempt after a backoff)
    recovering --recovery timeout passed--> failed (the server exits non-zero)
    degraded, recovery off (--no-recovery) --> failed (today's fail-and-stay: /health 503)

While not serving, /health answers 503 with the reason and new requests get 503 + Retry-After.
"""

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from onenode.errors import ConfigError

log = logging.getLogger("onenode.recovery")


class EngineState(str, Enum):
    SERVING = "serving"
    DEGRADED = "degraded"
    RECOVERING = "recovering"
    FAILED = "failed"


@dataclass(frozen=True)
class RecoveryConfig:
    enabled: bool = True
    timeout_s: float = 300.0  # --recovery-timeout: then the process exits for an outer supervisor
    retry_after_s: int = 10  # what 503 answers tell clients while the engine rebuilds

    def __post_init__(self):
        if self.timeout_s <= 0:
            raise ConfigError(f"--recovery-timeout {self.timeout_s:g} must be > 0 seconds; use "
                              f"--no-recovery to stay down after a failure")


class Recovery:
    """The state machine; one instance per served engine, read by /health and /metrics."""

    def __init__(self, config: RecoveryConfig, clock: Callable[[], float] = time.monotonic):
        self.config, self.clock = config, clock
        self.state = EngineState.SERVING
        self.reason: str | None = None
        self.restarts = 0
        self.attempts = 0
        self.deadline: float | None = None

    @property
    def serving(self) -> bool:
        return self.state is EngineState.SERVING

    def fail(self, reason: str) -> None:
        """A rank died or a step timed out: requests in flight have been failed."""
        self.reason, self.attempts = reason, 0
        if not self.config.enabled:
            self._to(EngineState.FAILED, f"engine failed, recovery is off: {reason}")
            return
        self.deadline = self.clock() + self.config.timeout_s
        self._to(EngineState.DEGRADED, f"engine degraded: {reason}")

    def start_attempt(self) -> None:
        self.attempts += 1
        self._to(EngineState.RECOVERING, f"engine recovering: attempt {self.attempts}, "
                                         f"{self.time_left():.0f}s left")

    def rebuilt(self) -> None:
        self.restarts += 1
        self.reason, self.deadline = None, None
        self._to(EngineState.SERVING, f"engine serving again (restart {self.restarts}, "
                                      f"{self.attempts} attempt(s))")

    def attempt_failed(self, error: str) -> bool:
        """True when another attempt fits before the deadline; else the engine has failed."""
        if self.time_left() > 0:
            log.warning("engine recovery attempt %d failed: %s", self.attempts, error)
            return True
        self.reason = (f"recovery did not succeed within {self.config.timeout_s:.0f}s "
                       f"(last error: {error})")
        self._to(EngineState.FAILED, f"engine failed: {self.reason}")
        return False

    def time_left(self) -> float:
        return 0.0 if self.deadline is None else max(0.0, self.deadline - self.clock())

    def describe(self) -> str:
        """The one line /health and refused requests carry."""
        if self.state is EngineState.FAILED:
            return f"the engine is dead ({self.reason}); restart `onenode serve`"
        return (f"the engine is {self.state.value} ({self.reason}); it is rebuilding itself, "
                f"retry in {self.config.retry_after_s}s")

    def _to(self, state: EngineState, line: str) -> None:
        self.state = state
        (log.error if state is EngineState.FAILED else log.warning)(line)


def rebuild(recovery: Recovery, wait_for_devices: Callable[[float], None],
            build: Callable[[], object], stopping: Callable[[], bool] = lambda: False,
            sleep: Callable[[float], None] = time.sleep):
    """Attempts until an engine is built or the deadline passes (None then, state FAILED):
    wait (bounded by the time left) until the cluster has the devices, then build the engine."""
    delay = 1.0
    while not stopping():
        recovery.start_attempt()
        try:
            wait_for_devices(recovery.time_left())
            log.warning("engine recovering: devices available, rebuilding workers, weights "
                        "and KV cache")
            engine = build()
        except Exception as exc:  # noqa: BLE001 - any failed attempt is retried until the deadline
            if not recovery.attempt_failed(f"{type(exc).__name__}: {str(exc)[:300]}"):
                return None
            sleep(min(delay, recovery.time_left()))
            delay = min(10.0, delay * 2)
            continue
        recovery.rebuilt()
        return engine
    return None
