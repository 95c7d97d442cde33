"""EngineRebuilder: what recovery needs from the engine side, for one served engine.

On the ray backend it also re-plans (replan.py): a rebuild that has waited `replan_after_s` for
the configured devices builds the largest smaller layout the remaining nodes hold (serving
degraded), and `can_grow_back` tells the engine thread when the configured layout fits again.
"""

import dataclasses
import logging
import time
from collections.abc import Callable

from engine.config import EngineConfig
from engine.loop.replan import fits_now, layout_text, replanned
from onenode.errors import ResourceError

log = logging.getLogger("onenode.recovery")
GROW_CHECK_S = 5.0  # how often a degraded engine asks Ray whether the missing node is back
# Growing back, the configured layout gets this long (Ray frees the old engine's devices) before
# the rebuild settles for a re-planned one again.
GROW_WAIT_S = 30.0


class EngineRebuilder:
    """Wait until the devices are back, build anew with the same backend as the first time."""

    def __init__(self, config: EngineConfig, backend: str, replan_after_s: float = 0.0,
                 model=None, clock: Callable[[], float] = time.monotonic):
        self.full = dataclasses.replace(config, distributed_executor_backend=backend)
        self.config = self.full  # what the next build uses: the full layout or a re-planned one
        self.serving = self.full  # the layout of the engine now serving
        self.replan_after_s, self.model, self.clock = replan_after_s, model, clock
        self.down_since: float | None = None  # since when the configured layout has not fit
        self._last_grow_check, self._grow_wait_until = 0.0, 0.0

    @property
    def degraded(self) -> str | None:
        """One line naming the layout served instead of the configured one, None when full."""
        if self.serving is self.full:
            return None
        return f"{layout_text(self.serving)} instead of {layout_text(self.full)} (a node is gone)"

    def _replans(self) -> bool:
        return (self.full.distributed_executor_backend == "ray" and self.replan_after_s > 0
                and self.full.pipeline_parallel_size > 1 and self.model is not None)

    def wait_for_devices(self, timeout_s: float) -> None:
        if self.full.distributed_executor_backend != "ray":
            return
        from engine.executor.ray import wait_for_devices

        now = self.clock()
        self.down_since = now if self.down_since is None else self.down_since
        self.config = self.full
        if not self._replans():
            wait_for_devices(self.full, timeout_s)
            return
        replan_at = max(self.down_since + self.replan_after_s, self._grow_wait_until)
        try:
            wait_for_devices(self.full, min(timeout_s, max(1.0, replan_at - now)))
            return
        except ResourceError:
            if self.clock() < replan_at:
                raise
        self.config = self._replan()

    def _replan(self) -> EngineConfig:
        from engine.executor.ray_inventory import device_kind, inventory

        kind = device_kind(self.full.device)
        config = replanned(self.full, self.model, inventory(kind), kind)
        log.warning("a node has been gone over %.0fs (--replan-after): re-planned onto the nodes "
                    "that remain, %s instead of %s; serving degraded until it is back",
                    self.replan_after_s, layout_text(config), layout_text(self.full))
        return config

    def can_grow_back(self) -> bool:
        """Serving degraded, and (checked every GROW_CHECK_S) the configured layout fits again."""
        now = self.clock()
        if self.serving is self.full or now - self._last_grow_check < GROW_CHECK_S:
            return False
        self._last_grow_check = now
        from engine.executor.ray_inventory import device_kind, inventory

        try:
            kind = device_kind(self.full.device)
            return fits_now(self.full, inventory(kind), kind)
        except Exception as exc:  # noqa: BLE001 - a GCS hiccup: ask again next time
            log.warning("could not read the Ray nodes to grow back (%s)", exc)
            return False

    def grow_back(self) -> None:
        """The next rebuild waits for the configured layout first (GROW_WAIT_S)."""
        self._grow_wait_until = self.clock() + GROW_WAIT_S

    def build(self):
        """A new engine that passed one real step through every stage (first_step.py)."""
        from engine.loop.first_step import first_step
        from engine.loop.llm_engine import LLMEngine

        config = self.config
        engine = LLMEngine(config)
        try:
            first_step(engine)
        except BaseException:
            engine.shutdown()
            raise
        self.serving = config
        if config is self.full:
            self.down_since = None
        return engine
