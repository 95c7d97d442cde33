# The two commands of the README: `make demo` and `make test`. Everything they need is installed
# here, idempotently: the venv (torch CPU wheel first), the Docker engine, the offline image.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
STAMP := $(VENV)/.onenode-$(shell cat pyproject.toml | sha256sum | cut -c1-12)
PYTEST_ARGS ?=
VARIANT ?= cpu

.PHONY: venv docker image test test-fast demo down clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(VENV)/bin/python || $(PY) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	# torch first, pinned: a bare `torch` requirement would pull a multi-GB CUDA build.
	$(VENV)/bin/pip install -q torch==2.13.0
	$(VENV)/bin/pip install -q -e '.[test]'
	@rm -f $(VENV)/.onenode-* && touch $(STAMP)

docker:
	@scripts/ensure_docker.sh

# The built tag (onenode:<content hash>) is kept in .onenode/image.tag: tests use that exact image,
# not `latest`, which another build on the same daemon may have moved.
image: venv docker
	@mkdir -p .onenode
	set -o pipefail; $(VENV)/bin/onenode image build --variant $(VARIANT) | tee .onenode/image.build.log
	@tail -n 1 .onenode/image.build.log > .onenode/image.tag

# Full suite, Docker e2e included. pytest's exit code 5 (no tests collected) is not a failure.
# ONENODE_REQUIRE_DOCKER=1: here a missing engine is a failure, not a skip.
test: image
	ONENODE_REQUIRE_DOCKER=1 ONENODE_TEST_IMAGE=$$(cat .onenode/image.tag) \
	  $(VENV)/bin/python -m pytest $(PYTEST_ARGS); rc=$$?; if [ $$rc -eq 5 ]; then rc=0; fi; exit $$rc

# Unit tests only (no Docker): seconds to a couple of minutes.
test-fast: venv
	$(VENV)/bin/python -m pytest -m "not docker and not slow" $(PYTEST_ARGS)

demo: image
	@scripts/demo.sh

down: venv
	$(VENV)/bin/onenode cluster down

clean:
	rm -rf $(VENV) build *.egg-info
