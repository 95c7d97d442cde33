"""Forward-progress watchdog: decides when the engine is stuck, and what then happens.

Every call the engine thread makes into the workers (a step, or the idle health ping) is opened
with `begin` and closed with `end`. A call still open past its deadline means a stuck rank (a
SIGSTOPped process, a hung kernel, a deadlocked collective): nothing else can tell, because the
call blocks the engine thread, so a monitor thread asks `overdue()` a few times a second.

    deadline = max(--step-timeout, FACTOR x expected)
    expected = max(slowest recent step, best recent seconds-per-token x the step's tokens)

(The best rate, because a 1-token decode step is mostly fixed cost: scaling it to a long prompt
would allow minutes. Large steps are roughly linear in their tokens beyond the best rate seen.)

`--step-timeout` is the floor: a step is never declared stuck sooner, whatever was measured. Before
the first measured step (first-call compiles) the floor is multiplied by FIRST_STEP_FACTOR.
The state machine is pure (injected clock); `WatchdogThread` is the only part with a thread.
"""

import collections
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from onenode.errors import ConfigError

log = logging.getLogger("onenode.watchdog")

FACTOR = 4.0  # a step this many times slower than any recent one is not just a slow step
FIRST_STEP_FACTOR = 3.0
WINDOW = 64  # recent steps the expectation is taken from
EXIT_GRACE_S = 1.0  # lets the requests in flight receive their error before the process exits
STUCK_EXIT_CODE = 75  # EX_TEMPFAIL: a supervisor (the head's, Kubernetes) restarts the server


@dataclass(frozen=True, slots=True)
class WatchdogConfig:
    step_timeout_s: float = 30.0  # --step-timeout: the floor of every deadline
    check_interval_s: float = 0.25

    def __post_init__(self):
        if self.step_timeout_s <= 0:
            raise ConfigError(f"--step-timeout {self.step_timeout_s:g} must be > 0 seconds; "
                              f"raise it if steps are legitimately that slow")


@dataclass(frozen=True, slots=True)
class _Call:
    serial: int
    what: str  # "step" or "health check"
    started: float
    tokens: Callable[[], int]  # read late: a step's batch is scheduled after it began


class StepWatchdog:
    def __init__(self, config: WatchdogConfig, clock: Callable[[], float] = time.monotonic):
        self.config, self.clock = config, clock
        self._open: _Call | None = None  # replaced whole, so the monitor reads it atomically
        self._serial = 0
        self._durations: collections.deque = collections.deque(maxlen=WINDOW)
        self._per_token: collections.deque = collections.deque(maxlen=WINDOW)
        self.last_progress = clock()

    def begin(self, what: str = "step", tokens: Callable[[], int] = lambda: 0) -> None:
        self._serial += 1
        self._open = _Call(self._serial, what, self.clock(), tokens)

    def end(self) -> None:
        """The call returned (normally or with an error): progress."""
        call, self._open = self._open, None
        now = self.clock()
        self.last_progress = now
        if call is None or call.what != "step":
            return
        took, tokens = now - call.started, _tokens(call)
        self._durations.append(took)
        if tokens > 0:
            self._per_token.append(took / tokens)

    def idle(self) -> None:
        """The engine thread is waiting for work with nothing queued: progress as well."""
        self.last_progress = self.clock()

    def deadline_s(self, tokens: int) -> float:
        floor = self.config.step_timeout_s
        if not self._durations:
            return floor * FIRST_STEP_FACTOR
        expected = max(max(self._durations), min(self._per_token, default=0.0) * tokens)
        return max(floor, FACTOR * expected)

    def overdue(self) -> tuple[int, str] | None:
        """(call serial, one-line reason) when the open call passed its deadline, else None."""
        call = self._open
        if call is None:
            return None
        tokens = _tokens(call) if call.what == "step" else 0
        limit = self.deadline_s(tokens)
        waited = self.clock() - call.started
        if waited <= limit:
            return None
        return call.serial, (f"a {call.what} ({tokens} tokens) did not return within "
                             f"{limit:.0f}s: a worker is stuck (stopped process, hung kernel or "
                             f"network); raise --step-timeout only if steps are this slow")


def _tokens(call: _Call) -> int:
    try:
        return int(call.tokens() or 0)
    except Exception:  # noqa: BLE001 - the engine is being replaced: count no tokens
        return 0


class WatchdogThread:
    """Asks the watchdog every check interval; calls `on_stuck(reason)` once per stuck call."""

    def __init__(self, watchdog: StepWatchdog, on_stuck: Callable[[str], None]):
        self.watchdog, self.on_stuck = watchdog, on_stuck
        self._stop = threading.Event()
        self._fired: int | None = None
        self._thread = threading.Thread(target=self._run, name="onenode-watchdog", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def check_once(self) -> None:
        found = self.watchdog.overdue()
        if found is None or found[0] == self._fired:
            return
        self._fired = found[0]
        log.error("engine stuck: %s", found[1])
        self.on_stuck(found[1])

    def _run(self) -> None:
        while not self._stop.wait(self.watchdog.config.check_interval_s):
            try:
                self.check_once()
            except Exception:  # noqa: BLE001 - the watchdog itself must never die
                log.exception("watchdog check failed")


def end_stuck_call(engine, reason: str, exit_process: Callable[[str], None] | None = None) -> None:
    """Kill the stuck workers (mp, ray: the engine thread's call then fails and recovery
    rebuilds); a stuck call in this very process (uni) cannot be ended, so the process exits."""
    interrupt = getattr(engine, "interrupt", None)
    try:
        if interrupt is not None and interrupt(reason):
            return
    except Exception as exc:  # noqa: BLE001 - could not kill them: exiting is what is left
        log.error("could not stop the stuck workers (%s)", exc)
    (exit_process or _exit_process)(reason)


def _exit_process(reason: str) -> None:
    log.error("exiting (code %d) so a supervisor restarts the server: %s", STUCK_EXIT_CODE,
              reason)
    time.sleep(EXIT_GRACE_S)
    os._exit(STUCK_EXIT_CODE)  # the stuck thread would block a normal exit forever
