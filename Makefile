# credit-decision: the two commands of the quick start are `make serve` and `make test`.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
HOST   ?= 127.0.0.1
PORT   ?= 8000

.PHONY: install system-deps serve dev-keys test lint typecheck unit bench bench-soak bench-dask bench-scale train clean

# Debian packages the tests and benchmarks drive: Chromium (console browser test),
# poppler-utils (PDF -> PNG check), wrk (load generator). Installed only when missing.
SYSTEM_TOOLS := /usr/bin/chromium /usr/bin/pdftoppm /usr/bin/wrk

$(STAMP): setup.cfg pyproject.toml requirements/constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=24"
	$(BIN)/python -m pip install --quiet -c requirements/constraints.txt -e '.[training,tests,batch]'
	touch $(STAMP)

install: $(STAMP) system-deps ## create .venv and install everything the project needs

system-deps:
	@missing=""; for t in $(SYSTEM_TOOLS); do test -x $$t || missing="$$missing $$t"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages for:$$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium poppler-utils wrk >/dev/null; \
	fi

train: $(STAMP) ## train the default models into ./model_store
	$(BIN)/credit-decision train

serve: $(STAMP) ## run the service on its embedded defaults (trains the default model first if the store is empty)
	@$(BIN)/credit-decision models champion >/dev/null 2>&1 || $(BIN)/credit-decision train
	@test -s var/api_keys || $(MAKE) --no-print-directory dev-keys
	HOST=$(HOST) PORT=$(PORT) $(BIN)/credit-decision serve

dev-keys: $(STAMP) ## create development API keys for every role (shown once; only their sha256 is kept, in var/api_keys)
	@echo "Development API keys (shown once; only their sha256 is kept, in var/api_keys):"
	@for r in scorer auditor admin reviewer; do \
	  k=$$($(BIN)/credit-decision keys create --role $$r --label dev-$$r 2>/dev/null) || exit 1; \
	  echo "  export $$(echo $$r | tr a-z A-Z)_KEY=$$k"; \
	done

lint: $(STAMP)
	$(BIN)/ruff check service model_store training cli tests benchmarks
	$(BIN)/ruff format --check service model_store training cli tests benchmarks

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP) system-deps
	$(BIN)/pytest -q

test: lint typecheck unit ## lint, type-check and run the whole test suite

# BENCH_BASELINE=<git revision> also serves and measures that revision side by side in the same run.
bench: $(STAMP) system-deps ## benchmarks; writes docs/PERFORMANCE.md
	$(BIN)/python -m benchmarks.run

bench-soak: $(STAMP) system-deps ## 10 minutes at 70% of peak: errors, worker memory, p99 per minute; writes docs/SOAK.md
	$(BIN)/python -m benchmarks.soak

bench-dask: $(STAMP) ## batch scoring on Dask, 1 and 2 workers; writes docs/SCALE-DASK.md
	$(BIN)/python -m benchmarks.dask_bench

# RECORDS=<n> seeds a smaller store (default 1,000,000); BACKEND=sqlite|postgres|both (default sqlite).
bench-scale: $(STAMP) system-deps ## the service over a store of a million decisions; writes docs/SCALE.md
	$(BIN)/python -m benchmarks.scale --records $(or $(RECORDS),1000000) --backend $(or $(BACKEND),sqlite)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
