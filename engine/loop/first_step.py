"""A rebuilt engine counts as serving only after one real step went through every pipeline stage.

Loading and warm-up (engine/worker/warm_up.py) run each stage on its own, so a broken link between
stages (a peer on a partitioned node, a stale address) would pass them and fail the first user
step: rebuild -> "serving" -> stuck -> rebuild. One 1-token request through the real scheduler,
executor and stage links proves the whole path before any user request is admitted.
"""

from engine.sampling_params import SamplingParams

REQUEST_ID = "onenode-first-step"


def first_step(engine) -> None:
    """Raises what the step raises; bounded by the caller (bounded_call.py)."""
    token = min(engine.model_config.eos_token_ids or (0,))
    engine.add_request(REQUEST_ID, [token], SamplingParams(max_tokens=1, temperature=0.0))
    while engine.has_unfinished_requests():
        engine.step()
