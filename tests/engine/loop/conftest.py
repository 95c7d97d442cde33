"""The loop's tests share the server tests' tiny checkpoint."""

from tests.engine.entrypoints.conftest import tiny_llama  # noqa: F401 - a fixture, used by name
