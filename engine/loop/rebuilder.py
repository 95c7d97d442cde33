"""EngineRebuilder: what recovery needs from the engine side, for one served engine."""

import dataclasses

from engine.config import EngineConfig


class EngineRebuilder:
    """Wait until the devices are back, build anew with the same backend as the first time."""

    def __init__(self, config: EngineConfig, backend: str):
        self.config = dataclasses.replace(config, distributed_executor_backend=backend)

    def wait_for_devices(self, timeout_s: float) -> None:
        if self.config.distributed_executor_backend == "ray":
            from engine.executor.ray import wait_for_devices

            wait_for_devices(self.config, timeout_s)

    def build(self):
        """A new engine that passed one real step through every stage (first_step.py)."""
        from engine.loop.first_step import first_step
        from engine.loop.llm_engine import LLMEngine

        engine = LLMEngine(self.config)
        try:
            first_step(engine)
        except BaseException:
            engine.shutdown()
            raise
        return engine
