# tongban — the two commands: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint typecheck unit unit-future test-dates chaos bench clean system-deps npm-deps
.PHONY: oidc-deps
.PHONY: workers-flood

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $(STAMP)

# Real parts the tests need (openssl, and later chromium/postgresql): installed when
# missing and running as root; otherwise the tests that need them fail loudly.
system-deps:
	@sh scripts/system-deps.sh

# npm packages the browser tests inject (axe-core), pinned, into the gitignored .cache/npm
npm-deps: system-deps
	@sh scripts/npm-deps.sh

# `make demo DATABASE=postgres` plays the demo on a throwaway PostgreSQL cluster (initdb and
# pg_ctl in a temporary folder, deleted afterwards); DATABASE=postgresql://… on that server.
# `make demo SM_PROVINCE=jiangsu` runs that province in the SM (national cryptography)
# profile; both can be combined.
DEMO_OPTIONS := $(foreach p,$(SM_PROVINCE),--sm-province '$(p)')
demo: $(STAMP) $(if $(filter postgres,$(DATABASE)),system-deps)
	$(if $(filter postgres,$(DATABASE)),$(BIN)/python -m relay.demo.throwaway_postgres $(DEMO_OPTIONS),$(BIN)/tongban demo $(if $(DATABASE),--database '$(DATABASE)') $(DEMO_OPTIONS))

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP) system-deps npm-deps
	$(BIN)/python -m pytest -q -n 2 --dist loadgroup

# The suite on other dates: libfaketime shifts the wall clock of pytest, its xdist workers
# and every process they start (`tongban serve`, openssl) by a relative offset. The
# monotonic clock moves by the same constant, so durations (asyncio timeouts) keep their
# length; FAKETIME_DONT_FAKE_MONOTONIC=1 would break time.sleep (EINVAL from
# clock_nanosleep with TIMER_ABSTIME in libfaketime 0.9.10), so it is not set.
FAKETIME      := faketime -f
PYTEST        := $(BIN)/python -m pytest -q -n 2 --dist loadgroup

# The console sign-in tests: npm's oidc-provider (pinned, into .cache/npm-oidc) for the
# OpenID Connect test.
oidc-deps:
	@sh scripts/npm-oidc.sh
unit unit-future test-dates: oidc-deps

# `make test` runs the whole suite once more, browser tests included, more than a year
# ahead and across a midnight and a new year: the clock is shifted (a relative offset, one
# clock for every process, Chromium and the npm OpenID provider too) so that the run
# starts at 23:58 UTC on 31 December of next year, 13 to 25 months from today. A test
# that takes "now" at import and a day or a year from it later (a CRL's "same day", a
# calendar year) meets the turn there.
unit-future: $(STAMP) system-deps npm-deps
	$(FAKETIME) +$$(( $$(date -u -d "$$(( $$(date -u +%Y) + 1 ))-12-31 23:58:00" +%s) - $$(date -u +%s) ))s \
	  $(PYTEST)

# The whole suite, browser tests included, one and five years ahead.
test-dates: $(STAMP) system-deps npm-deps
	$(FAKETIME) +365d $(PYTEST)
	$(FAKETIME) +1826d $(PYTEST)

test: lint typecheck unit unit-future

# The fault-injection suite (tests/chaos, root needed for tmpfs) at a larger scale than
# its short form in `make unit`: more cases and kills; CHAOS_SEED=N replays a run.
chaos: $(STAMP) system-deps
	CHAOS_SCALE=$${CHAOS_SCALE:-5} $(BIN)/python -m pytest -q -s tests/chaos

# Several workers of one node behind HAProxy, one killed -9 mid-flood (tests/workers), at
# the issue's 2,000 packets; `make unit` runs it with 120.
workers-flood: $(STAMP) system-deps
	WORKERS_FLOOD=$${WORKERS_FLOOD:-2000} $(BIN)/python -m pytest -q -s tests/workers/test_flood_kill.py

bench: $(STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
