# credit-decision: the two commands of the quick start are `make serve` and `make test`.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
HOST   ?= 127.0.0.1
PORT   ?= 8000

.PHONY: install serve test lint typecheck unit bench train clean

$(STAMP): setup.cfg pyproject.toml requirements/constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=24"
	$(BIN)/python -m pip install --quiet -c requirements/constraints.txt -e '.[training,tests]'
	touch $(STAMP)

install: $(STAMP) ## create .venv and install everything the project needs

train: $(STAMP) ## train the default models into ./model_store
	$(BIN)/credit-decision train

serve: $(STAMP) ## run the service on its embedded defaults (trains the default model first if the store is empty)
	@$(BIN)/credit-decision models champion >/dev/null 2>&1 || $(BIN)/credit-decision train
	HOST=$(HOST) PORT=$(PORT) $(BIN)/credit-decision serve

lint: $(STAMP)
	$(BIN)/ruff check service model_store training cli tests benchmarks
	$(BIN)/ruff format --check service model_store training cli tests benchmarks

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest -q

test: lint typecheck unit ## lint, type-check and run the whole test suite

bench: $(STAMP) ## benchmarks; writes docs/PERFORMANCE.md
	$(BIN)/python -m benchmarks.run

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
