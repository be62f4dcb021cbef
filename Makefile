# The two set-up commands of the README: `make demo` and `make test`. Both create .venv and install.
VENV ?= .venv
PY := $(VENV)/bin/python
# CPU machines: torch 2.13.0 resolves to the CPU build. On a GPU machine install your CUDA torch
# into the venv first, or run `make TORCH_SPEC=torch ...`.
TORCH_SPEC ?= torch==2.13.0
EXTRAS ?= dev,deepspeed,embeddings,serving
PYTEST_ARGS ?=

.PHONY: install test test-fast demo lint bench clean

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[$(EXTRAS)]"
	touch $@

install: $(VENV)/.installed

test: install
	$(PY) -m pytest $(PYTEST_ARGS)

test-fast: install
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

demo: install
	$(PY) -m genstruct_train.demo --output runs/demo

lint: install
	$(VENV)/bin/ruff check genstruct_train recipes eval bench tests

clean:
	rm -rf runs
