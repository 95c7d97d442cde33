"""The engine's compiled CPU kernels (C++, built once per machine; see build.py)."""
