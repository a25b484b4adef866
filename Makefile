# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint clean install gpu-check

install: $(STAMP)

# torch first, pinned: a bare `torch` requirement would pull a multi-GB CUDA build.
$(STAMP): pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/rlbasins run configs/quickstart.yaml --overwrite

test: $(STAMP)
	$(BIN)/pytest -q

# On a machine with CUDA (docs/gpu.md): the CUDA tests, then the GPU benchmarks as JSON in runs/bench/.
gpu-check: $(STAMP)
	$(BIN)/pytest -q -m cuda -rs tests/test_gpu_readiness.py
	mkdir -p runs/bench
	$(BIN)/rlbasins bench envs --device cuda --num-envs 4096 --num-envs 65536 -o runs/bench/envs_cuda.json
	$(BIN)/rlbasins bench ppo --device cuda --env CartPole-v1 -o runs/bench/ppo_cartpole_cuda.json
	$(BIN)/rlbasins bench ppo --device cuda --env rlbasins/CueConflict-v0 --epochs 4 -o runs/bench/ppo_cueconflict_cuda.json

lint: $(STAMP)
	$(BIN)/ruff check rlbasins envs reward_models tests

clean:
	rm -rf $(VENV) runs
