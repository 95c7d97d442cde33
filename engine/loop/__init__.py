"""The engine loop's floor: LLMEngine (schedule -> execute -> update), the async bridge that
serves it to asyncio callers, recovery, and the EngineClient face the server sees. It sits between
engine/entrypoints (above) and engine/executor (below); engine/core holds the step data."""
