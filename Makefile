# Two commands do all the set-up on a fresh machine (each is idempotent):
#   make demo   information vs binary dropout classifiers, then a small priors study on dSprites; both tables
#   make test   run the test suite (the default run: under 10 minutes on 2 CPU cores)
# The virtual environment lives in .venv; it is rebuilt only when pyproject.toml changes.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# torch and torchvision are installed as a matching pair before the project (override for other machines).
TORCH  ?= torch==2.14.1 torchvision==0.29.1
# Data: $INFODROPOUT_DATA if set, else ../shared/data where it exists (nothing is downloaded).
export INFODROPOUT_DATA ?= $(abspath $(wildcard ../shared/data))

.PHONY: setup demo test test-all bench lint

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(TORCH)
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/infodropout demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

test-all: $(STAMP)
	$(BIN)/python -m pytest -q -m "slow or not slow"

bench: $(STAMP)
	$(BIN)/infodropout bench --out runs/bench

lint: $(STAMP)
	$(BIN)/ruff check .
