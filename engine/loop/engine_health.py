"""What /health, /metrics and refused requests say about one engine, from its recovery state."""

from engine.loop.engine_client import EngineHealth
from engine.loop.recovery import EngineState, Recovery
from onenode.errors import EngineDeadError


def engine_health(recovery: Recovery, alive: bool, dead: str | None,
                  degraded: str | None) -> EngineHealth:
    message, retry_after = None, None
    if not alive and recovery.serving:  # the loop ended without recovery being told
        message = f"the engine is dead ({dead}); restart `onenode serve`"
    elif not alive:
        message, retry_after = recovery.describe(), recovery.retry_after_s()
    return EngineHealth(alive=alive, state=recovery.state.value,
                        states=tuple(s.value for s in EngineState), message=message,
                        retry_after_s=retry_after, restarts=recovery.restarts,
                        degraded=degraded if alive else None)


def refusal(message: str, retry_after_s: int | None) -> EngineDeadError:
    """The error a request gets while the engine does not take it; the server's 503 carries
    Retry-After when it is set."""
    exc = EngineDeadError(message)
    exc.retry_after_s = retry_after_s
    return exc
