# Two commands do all the set-up on a fresh machine (see README.md):
#   make run   - create the environment on first use, then `streamlit run streamlit_app.py`
#   make test  - create the environment on first use, then run the test suite
#   make check - lint (ruff) and type-check (mypy) with the settings in pyproject.toml
#   make test-postgres - the whole suite again with every store in PostgreSQL (a throwaway server from Debian's
#                 postgresql package, or $MEDRAG_TEST_DATABASE_URL; tests/pgsuite.py)
PYTHON ?= python3
VENV := .venv
# The stamp changes whenever the dependency files change, so the environment follows them.
STAMP := $(VENV)/.installed-$(shell cat requirements.txt pyproject.toml Makefile | sha256sum | cut -c1-12)

# Installed without their dependency pins (see the medspaCy note in requirements.txt).
MEDSPACY_NODEPS := medspacy==1.3.1 PyRuSH==1.0.13 medspacy_quickumls==3.2

.PHONY: setup run test test-postgres bench check

$(STAMP): requirements.txt pyproject.toml Makefile
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --disable-pip-version-check -q -r requirements.txt
	$(VENV)/bin/python -m pip install --disable-pip-version-check -q --no-deps $(MEDSPACY_NODEPS)
	$(VENV)/bin/python -m pip install --disable-pip-version-check -q --no-deps -e .
	@rm -f $(VENV)/.installed-*
	@touch $(STAMP)

setup: $(STAMP)

run: setup
	$(VENV)/bin/streamlit run streamlit_app.py

test: setup
	HF_HUB_OFFLINE=1 $(VENV)/bin/python -m pytest $(PYTEST_ARGS)

test-postgres: setup
	MEDRAG_TEST_STORE=postgres HF_HUB_OFFLINE=1 $(VENV)/bin/python -m pytest $(PYTEST_ARGS)

check: setup
	$(VENV)/bin/ruff check . && $(VENV)/bin/mypy
