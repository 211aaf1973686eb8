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

.PHONY: setup test test-fast run lint typecheck bench soak protos up down status clean ui browser deploy-check gpu-check gpu-wheels flow-concurrency

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

# The flow's concurrency (issue 20 item 4): 150 classifier cells on 16 one-slot servers with fake jobs
# under a local Prefect server (about 2 minutes) -> bench/results/flow-concurrency.json.
flow-concurrency: setup
	$(PY) bench/flow_concurrency.py

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

# Not part of `make test` (image builds take many minutes; docs/docker.md): builds the five images, runs the
# Compose stack with an S3 stand-in for MinIO, a job sequence across it, the Prefect flow-run Job in the flow
# image, `compose stop` with jobs running, and each Kubernetes Deployment's pod spec under `docker run`;
# writes bench/results/deploy.json. Uses the engine DOCKER_HOST names; where none answers, the private
# daemon of CONTAINER_TOOLS (an offline build machine's stand-ins for the base and MinIO images).
CONTAINER_TOOLS ?= ../shared/tools/containers
ON_TOOLS_MACHINE := $(wildcard $(CONTAINER_TOOLS)/start-dockerd.sh)
BASE ?= $(if $(ON_TOOLS_MACHINE),local/python:3.11-slim-bookworm,python:3.11-slim-bookworm)
S3_IMAGE ?= local/moto-s3
# Only on that machine: its package indexes have the pinned torch 2.14.1 as the CUDA build alone and no
# torchvision that imports beside its one CPU torch (2.13.0+cpu), so the images that run carry the CUDA
# build (it runs on the CPU), and the CPU generation image is built with 2.13.0+cpu to be sized, not run.
DEPLOY_CHECK_ARGS ?= $(if $(ON_TOOLS_MACHINE),--torch-variant cuda --cpu-size-probe TORCH_INDEX_URL= \
	"TORCH_PINS=torch==2.13.0+cpu torchvision==0.28.0",)
deploy-check: setup
	SKINGENBENCH_CONTAINER_TOOLS=$(abspath $(CONTAINER_TOOLS)) $(PY) -m bench.deploy_check \
		--base $(BASE) --s3-image $(S3_IMAGE) $(DEPLOY_CHECK_ARGS)

# The one GPU check (bench/gpu_check.py, docs/gpu-check.md): < 8 min on one H200, writes bench/results/gpu.json;
# `make gpu-check ARGS=--dry-run` runs the same code at tiny sizes on the CPU. No `setup` prerequisite: a GPU node
# has no network and no venv, only its preinstalled torch stack, the project installed with --no-deps and the
# wheels below; the script runs as a script because under -m the repository's skingenbench/ folder would shadow
# the installed package.
GPU_PYTHON ?= $(if $(wildcard $(PY)),$(PY),python3)
GPU_WHEELS := build/gpu-wheels
# What the measured code imports that the node lacks (pure-Python wheels, pinned to the versions tested here), and
# what diffusers checks for at import; build-tools/ holds what `pip install --no-deps .` builds the project with.
GPU_WHEEL_PACKAGES := diffusers==0.42.1 torch-fidelity==0.4.0 dacite==1.9.2 tqdm==4.70.1 requests==2.34.2 \
	urllib3==2.8.0 idna==3.20 certifi==2026.10.19.post1 charset-normalizer==3.5.3
GPU_BUILD_TOOLS := setuptools==84.2.1 wheel
gpu-check:
	$(GPU_PYTHON) bench/gpu_check.py $(ARGS)

gpu-wheels:
	rm -rf $(GPU_WHEELS)
	$(GPU_PYTHON) -m pip download --quiet --no-deps --only-binary=:all: --implementation py --abi none \
		--platform any --dest $(GPU_WHEELS) $(GPU_WHEEL_PACKAGES)
	$(GPU_PYTHON) -m pip download --quiet --no-deps --only-binary=:all: --dest $(GPU_WHEELS)/build-tools \
		$(GPU_BUILD_TOOLS)
	@du -sh $(GPU_WHEELS)
	@test $$(du -sm $(GPU_WHEELS) | cut -f1) -lt 30 || { echo "$(GPU_WHEELS) is 30 MB or more"; exit 1; }

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache build/typecheck build/mypy_cache skingenbench/api/v1/*_pb2*.py skingenbench/api/v1/*_pb2*.pyi
