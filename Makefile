# One entry point. `make up` runs the product, `make test` runs every test; both
# install what they need first (venv, Python packages, and as root on Linux the
# kernel-side dependencies of the eBPF collector).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install kernel-deps test-runtimes node node-deps up test lint bench clean

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

# The node packages the tests run (the AsyncAPI parser, the example Node subscriber),
# each from its committed package-lock.json; a package is reinstalled only when its
# lock file changes. Install scripts are not run (none of them needs one).
NODE_PACKAGES := tools/asyncapi-check examples/node-subscriber
NODE_STAMPS := $(addsuffix /node_modules/.package-lock.json,$(NODE_PACKAGES))

node-deps: node $(NODE_STAMPS)

# Node.js and npm from Debian's packages when the machine has none and we may install
# (root with apt-get, as in CI); elsewhere the node tests skip and say why.
node:
	@command -v npm >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
		&& DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null; } || true

%/node_modules/.package-lock.json: %/package-lock.json %/package.json
	@if command -v npm >/dev/null; then \
		npm ci --prefix $* --no-audit --no-fund --ignore-scripts --loglevel=error && touch $@; \
	else echo "node-deps: npm not found, $* not installed (its tests skip)"; fi

up: install
	$(BIN)/vigil up

test: install test-runtimes node-deps
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
	rm -rf $(VENV) .pytest_cache .hypothesis $(addsuffix /node_modules,$(NODE_PACKAGES))
