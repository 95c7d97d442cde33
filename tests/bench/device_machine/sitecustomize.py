"""The lent GPU machine's package set, simulated: a Python whose PYTHONPATH starts with this
directory imports this file at start-up (site.py), and so do its subprocesses (mp workers), and
then cannot import the packages named in ONENODE_BLOCK_IMPORTS (comma-separated), as if they were
not installed (ModuleNotFoundError, and importlib.util.find_spec returns None)."""

import importlib.abc
import os
import sys

BLOCKED = frozenset(filter(None, os.environ.get("ONENODE_BLOCK_IMPORTS", "").split(",")))


class _NotInstalled(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


if BLOCKED:
    sys.meta_path.insert(0, _NotInstalled())
