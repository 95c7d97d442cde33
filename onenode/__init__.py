"""onenode's top: `onenode.cli` (the `onenode` command, above every package) and a small shared
kernel below every package (errors, secrets, paths, units, names, net) that imports none of them.

Layers, top to bottom (checked by import-linter in `make test`, see pyproject.toml):
    onenode.cli -> bench -> cluster -> healthcheck -> engine -> onenode kernel
"""

__version__ = "0.1.0"
