# tongban — the two commands: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint typecheck unit chaos bench clean system-deps

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $(STAMP)

# Real parts the tests need (openssl, and later chromium/postgresql): installed when
# missing and running as root; otherwise the tests that need them fail loudly.
system-deps:
	@sh scripts/system-deps.sh

demo: $(STAMP)
	$(BIN)/tongban demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP) system-deps
	$(BIN)/python -m pytest -q -n 2 --dist loadgroup

test: lint typecheck unit

# The fault-injection suite (tests/chaos, root needed for tmpfs) at a larger scale than
# its short form in `make unit`: more cases and kills; CHAOS_SEED=N replays a run.
chaos: $(STAMP) system-deps
	CHAOS_SCALE=$${CHAOS_SCALE:-5} $(BIN)/python -m pytest -q -s tests/chaos

bench: $(STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
