"""The `onenode` logger: INFO to stderr by default like vLLM's, level from ONENODE_LOG_LEVEL."""

import logging
import os

_configured = False


def init_logger(name: str = "onenode") -> logging.Logger:
    global _configured
    root = logging.getLogger("onenode")
    if not _configured:
        _configured = True
        if not root.handlers:
            handler = logging.StreamHandler()
            handler.setFormatter(logging.Formatter("%(levelname)s %(asctime)s %(name)s: "
                                                   "%(message)s", "%m-%d %H:%M:%S"))
            root.addHandler(handler)
        root.setLevel(os.environ.get("ONENODE_LOG_LEVEL", "INFO").upper())
        root.propagate = False
    return logging.getLogger(name)
