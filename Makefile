# SkinGenBench — every target does its own set-up; `make setup` is quick when nothing changed.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
PROTOS := $(wildcard protos/skingenbench/api/v1/*.proto)
STUBS := skingenbench/api/v1/common_pb2.py
GRID ?= demo
# Tests and the demo never reach a model hub: weights come from local files or random init.
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: setup test test-fast run lint typecheck bench soak protos up down status clean ui browser

setup: $(STAMP) $(STUBS)

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

# Re-installs only when pyproject.toml changes.
$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e '.[all,dev]'
	touch $@

# gRPC stubs are generated, never edited; they are rebuilt when a .proto changes.
$(STUBS): $(PROTOS) | $(STAMP)
	$(PY) -m grpc_tools.protoc -I protos --python_out=. --grpc_python_out=. --pyi_out=. $(PROTOS)
	touch $@

protos: | $(STAMP)
	$(PY) -m grpc_tools.protoc -I protos --python_out=. --grpc_python_out=. --pyi_out=. $(PROTOS)

test: setup browser
	$(PY) -m pytest -q

test-fast: setup
	$(PY) -m pytest -q -m "not slow"

run: setup
	$(PY) -m skingenbench.cli run --grid $(GRID)

# The shipped grids as Prefect deployments on the local Prefect server and stack: start one from the UI's
# Run button (docs/prefect-ui.md). Ctrl-C stops serving and what it started.
ui: setup
	$(PY) -m skingenbench.cli serve-flows

# Headless Chromium for tests/browser, Debian's package (Playwright drives it; never `playwright install`).
# Installed only when missing; that needs root, as in CI. Elsewhere the browser tests skip and say so.
CHROMIUM ?= /usr/bin/chromium
browser:
	@test -x $(CHROMIUM) || { \
		if [ "$$(id -u)" = 0 ]; then \
			apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; \
		else echo "make browser: $(CHROMIUM) is missing and installing it needs root; tests/browser will skip"; fi; }

# Fails on a lint finding and on format drift alike; `ruff format $(LINTED)` mends the drift.
LINTED := services flows skingenbench tests bench setup.py
lint: setup
	$(PY) -m ruff check $(LINTED)
	$(PY) -m ruff format --check $(LINTED)

# Type-checks every pure core (services/core and each stage's services/<stage>/core) and the platform; the
# servicers, flows and CLI are not checked yet. mypy cannot read setup.py's package-dir mapping (services/ ->
# skingenbench.services), so it runs in a throwaway tree of symlinks laid out as installed; config and cache
# stay in pyproject.toml and build/.
TYPECHECK_TREE := build/typecheck
TYPECHECKED := skingenbench/services/core skingenbench/services/platform \
	skingenbench/services/preprocessing/core skingenbench/services/data/core \
	skingenbench/services/generation/core skingenbench/services/evaluation/core \
	skingenbench/services/classification/core
typecheck: setup
	rm -rf $(TYPECHECK_TREE)
	mkdir -p $(TYPECHECK_TREE)/skingenbench
	for entry in skingenbench/*; do ln -s $(CURDIR)/$$entry $(TYPECHECK_TREE)/skingenbench/; done
	ln -s $(CURDIR)/services $(TYPECHECK_TREE)/skingenbench/services
	ln -s $(CURDIR)/flows $(TYPECHECK_TREE)/skingenbench/flows
	cd $(TYPECHECK_TREE) && $(abspath $(PY)) -m mypy --config-file $(CURDIR)/pyproject.toml \
		--cache-dir $(CURDIR)/build/mypy_cache $(TYPECHECKED)

bench: setup
	$(PY) -m bench.run --out bench/results/latest.json

# Outside CI (under a minute): the reliability sweep (tests/reliability/test_bad_inputs.py) repeated with
# concurrency beside bursts of 64 concurrent Generate calls, against the four services as processes;
# writes status counts, latency percentiles and RSS before/during/after to bench/results/reliability.json.
soak: setup
	$(PY) -m bench.soak --out bench/results/reliability.json

up: setup
	$(PY) -m skingenbench.cli up

down: setup
	$(PY) -m skingenbench.cli down

status: setup
	$(PY) -m skingenbench.cli status

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache build/typecheck build/mypy_cache skingenbench/api/v1/*_pb2*.py skingenbench/api/v1/*_pb2*.pyi
