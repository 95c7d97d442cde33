"""EngineClient: the one face the OpenAI server sees of whatever serves its requests.

One local AsyncEngine stands behind it, or N data-parallel replicas behind a router
(dp_client.py), as vLLM's `EngineClient`. The server (engine/entrypoints/) uses nothing else:
no reaching into an engine's scheduler, tokenizer or recovery state.
"""

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from engine.outputs import RequestOutput
from engine.sampling_params import SamplingParams


@dataclass(frozen=True, slots=True)
class ReplicaHealth:
    """One data-parallel replica, as /health, /metrics and the stats line show it."""
    replica: int
    state: str  # "serving", "recovering" (rebuilding itself) or "down" (failed for good)
    restarts: int
    message: str | None = None


REPLICA_STATES = ("serving", "recovering", "down")


@dataclass(frozen=True, slots=True)
class EngineHealth:
    """What /health, /metrics and refused requests say about the engine, read in one go."""
    alive: bool  # serving requests now
    state: str  # "serving", "degraded", "recovering" or "failed"
    states: tuple[str, ...]  # every state it can be in (for a one-hot metric)
    message: str | None  # one line for a 503 while not serving
    retry_after_s: int | None  # set while the engine rebuilds itself: clients should retry
    restarts: int  # rebuilds so far
    replicas: tuple[ReplicaHealth, ...] = ()  # data-parallel replicas; () for one engine
    degraded: str | None = None  # serving a re-planned layout (a node is gone): which one


@runtime_checkable
class EngineClient(Protocol):
    # ---- model facts, fixed for the client's life ------------------------------------------
    @property
    def tokenizer(self): ...

    @property
    def max_model_len(self) -> int: ...

    @property
    def vocab_size(self) -> int: ...

    def default_sampling_params(self) -> dict: ...

    # ---- requests ---------------------------------------------------------------------------
    def generate(self, request_id: str, prompt: str | list[int], params: SamplingParams,
                 prompt_text: str | None = None) -> AsyncIterator[RequestOutput]: ...

    def abort(self, request_id: str) -> None: ...

    def compile_grammar(self, structured_outputs) -> None:
        """Compile (and cache) a request's grammar; raises ConfigError for a bad one. Thread-safe:
        the server calls it off the event loop."""

    # ---- health and statistics -------------------------------------------------------------
    @property
    def alive(self) -> bool: ...

    def health(self) -> EngineHealth: ...

    @property
    def stats(self) -> dict: ...

    @property
    def num_waiting(self) -> int: ...

    def shutdown(self, timeout_s: float = 30.0) -> None: ...
