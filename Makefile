# Two-command set-up: `make demo` and `make test` create .venv and install what they need.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-test
BENCH_STAMP := $(VENV)/.installed-bench

.PHONY: test lint bench demo clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# torch is pinned and installed before anything that could pull an unpinned (CUDA) build.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

# smartnoise-synth (the DP peer) pins an ancient opacus, so it goes in without its own pins,
# followed by what it really needs at run time.
SMARTNOISE := smartnoise-synth==1.0.8 smartnoise-sql==1.0.10 mbi==1.1.0
SMARTNOISE_DEPS := jax jaxlib chex optax attrs 'disjoint-set<0.10' 'opendp>=0.14.1,<0.15' \
	antlr4-python3-runtime==4.9.3 graphviz Faker deprecated wrapt

$(BENCH_STAMP): $(STAMP)
	$(BIN)/pip install --quiet -e '.[test,bench]' torch==2.13.0
	$(BIN)/pip install --quiet --no-deps $(SMARTNOISE)
	$(BIN)/pip install --quiet $(SMARTNOISE_DEPS) torch==2.13.0
	touch $@

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: lint
	$(BIN)/python -m pytest

bench: $(BENCH_STAMP)
	$(BIN)/python -m benchmarks

TOPOLOGY ?= federated
demo: $(STAMP)
	$(BIN)/python demo/run.py --topology $(TOPOLOGY)

clean:
	rm -rf $(VENV) .demo .pytest_cache .ruff_cache build *.egg-info
