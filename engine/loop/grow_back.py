"""Growing back from a re-planned (degraded) layout to the configured one, at a quiet moment.

While the engine serves degraded (rebuilder.py, replan.py), the engine thread asks the rebuilder
every loop whether the missing node is back (it reads Ray only every few seconds). Once it is,
new requests get 503 + Retry-After while those in flight finish, for at most --shutdown-timeout
seconds; then the loop ends with `GrowingBack` and recovery rebuilds the configured layout.
"""

import logging
import time
from collections.abc import Callable

from onenode.errors import EngineDeadError

log = logging.getLogger("onenode.recovery")


class GrowingBack(EngineDeadError):
    """Ends the degraded engine's loop on purpose: not a failure of the crash-loop budget."""


class GrowBack:
    def __init__(self, rebuilder, drain_s: float, clock: Callable[[], float] = time.monotonic):
        self.rebuilder, self.drain_s, self.clock = rebuilder, drain_s, clock
        self.draining_since: float | None = None

    @property
    def draining(self) -> bool:
        return self.draining_since is not None

    def due(self, busy: bool) -> bool:
        """True when the engine should stop and rebuild the configured layout now."""
        if self.draining_since is None:
            ask = getattr(self.rebuilder, "can_grow_back", None)
            if ask is None or not ask():
                return False
            self.draining_since = self.clock()
            log.warning("the missing node is back: draining new admissions for at most %.0fs, "
                        "then growing back to the configured layout", self.drain_s)
        return not busy or self.clock() - self.draining_since >= self.drain_s

    def refusal_text(self) -> str:
        return ("the engine is about to grow back to its configured layout (a node returned); "
                "retry shortly")

    def failure(self) -> GrowingBack:
        self.draining_since = None
        self.rebuilder.grow_back()
        return GrowingBack("growing back to the configured layout: the missing node returned")
