"""`python -m engine.kernels`: compile the CPU kernels into the cache now (make, image build)."""

import sys

from engine.kernels.build import build

if __name__ == "__main__":
    try:
        print(f"CPU kernels: {build()}")
    except RuntimeError as e:
        sys.exit(f"CPU kernels not built ({e}); the engine will use its PyTorch fallback")
