"""A rebuilt engine counts as serving only after one real step went through every pipeline stage.

Loading and warm-up (engine/worker/warm_up.py) run each stage on its own, so a broken link between
stages (a peer on a partitioned node, a stale address) would pass them and fail the first user
step: rebuild -> "serving" -> stuck -> rebuild. One 1-token request through the real scheduler,
executor and stage links proves the whole path before any user request is admitted.
"""

import threading

from engine.sampling_params import SamplingParams

REQUEST_ID = "onenode-first-step"
TIMEOUT_S = 120.0  # one token of one prompt token, cold: generous even for first-call compiles


def first_step(engine, timeout_s: float = TIMEOUT_S) -> None:
    """Raises what the step raises. A step still stuck at the deadline has its workers killed
    (engine.interrupt), so the step fails instead of holding devices behind an abandoned attempt
    (bounded_call.py bounds it too, for a uni engine that cannot be interrupted)."""
    token = min(engine.model_config.eos_token_ids or (0,))
    engine.add_request(REQUEST_ID, [token], SamplingParams(max_tokens=1, temperature=0.0))
    timer = threading.Timer(timeout_s, engine.interrupt,
                            (f"the first step did not pass every stage within {timeout_s:.0f}s",))
    timer.daemon = True
    timer.start()
    try:
        while engine.has_unfinished_requests():
            engine.step()
    finally:
        timer.cancel()
