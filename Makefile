# One entry point. `make up` runs the product, `make test` runs every test; both
# install what they need first (venv, Python packages, and as root on Linux the
# kernel-side dependencies of the eBPF collector).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install kernel-deps test-runtimes up test lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP) kernel-deps

kernel-deps: $(STAMP)
	@bash infra/host/install-kernel-deps.sh $(VENV)

# Only for the tests: real podman, docker and containerd containers (tests/kernel).
# `make up` never installs a container runtime; it uses the ones a host has.
test-runtimes:
	@bash infra/host/install-test-runtimes.sh

up: install
	$(BIN)/vigil up

test: install test-runtimes
	$(BIN)/python -m pytest

# ruff and mypy (strict, on every package: pyproject's [tool.mypy] files) come with
# the dev extra the venv is installed with, as do the type stubs mypy reads.
LINTED := contracts services collector tests bench

lint: $(STAMP)
	$(BIN)/ruff check $(LINTED)
	$(BIN)/ruff format --check $(LINTED)
	$(BIN)/mypy

bench: install
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
