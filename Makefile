# The two commands of the README: `make run` (install if needed, synthesise the default
# corpus if absent, train, decode, score) and `make test`.
PY ?= python3
# `make run RECIPE=iam_ondb` runs the handwriting recipe instead.
RECIPE ?= timit
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint install clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" bash recipes/$(RECIPE)/run.sh

test: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .

clean:
	rm -rf exp data/timit_synthetic data/iamondb_synthetic
