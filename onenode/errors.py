"""The one error hierarchy of onenode.

Every error a user can cause derives from OnenodeError and carries a one-line message that names
the fix. The CLI edges (onenode.cli, run_cluster) catch OnenodeError once and print only the line;
`--debug` shows the traceback. Every package raises these, so the hierarchy lives in the shared
kernel below all of them.
"""


class OnenodeError(Exception):
    """Base class: str(error) is a single line that says what to do."""


class ConfigError(OnenodeError, ValueError):
    """Invalid configuration or arguments (also a ValueError, like vLLM's)."""


class ModelLoadError(OnenodeError):
    """The model cannot be found, read or is of an unsupported architecture."""


class ResourceError(OnenodeError):
    """Not enough devices, memory or KV blocks for the requested configuration."""


class ClusterError(OnenodeError):
    """Docker, container or Ray cluster problems."""


class EngineDeadError(OnenodeError):
    """A worker or the engine loop died; the engine cannot serve any more requests."""
