# healthcommerce: `make demo` runs the app with the sandbox EHR; `make test` runs the whole suite.
# Needs only Python 3.11+: the venv, SQLite and a broker-less Celery setup are the defaults.
# `make serve` runs it as a hospital would (docs/deploy.md): PostgreSQL, Redis, gunicorn, worker and beat.
# Both run the Procfile with scripts/procfile.sh: Ctrl-C, or TERM or KILL to make's process group, stops every process.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat requirements.txt requirements-dev.txt | cksum | cut -d' ' -f1)
# The independent X12 validator (linuxforhealth-x12, pydantic 1) in a venv of its own (ADR 0025).
X12_VENV := .venv-x12
X12_REQUIREMENTS := tests/peers/x12validator/requirements.txt
X12_STAMP := $(X12_VENV)/.installed-$(shell cksum < $(X12_REQUIREMENTS) | cut -d' ' -f1)

.PHONY: setup demo demo-setup test test-faults lint lock bench clean release serve deploy-check medusa-setup messages \
	hl7-peer-setup x12-validator-setup

$(STAMP): requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check --require-hashes -r requirements-dev.txt
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

setup: $(STAMP)

demo-setup: setup
	SANDBOX_ENABLED=true $(BIN)/python manage.py migrate --noinput
	SANDBOX_ENABLED=true $(BIN)/python manage.py sandbox_load
	SANDBOX_ENABLED=true $(BIN)/python manage.py demo_setup

demo: demo-setup
	SANDBOX_ENABLED=true bash scripts/demo.sh

# Production: the environment names PostgreSQL, Redis, a mail relay and an https APP_BASE_URL (docs/deploy.md);
# the app refuses to start without them. `release` runs once per deploy, before the new processes start.
deploy-check: setup
	$(BIN)/python manage.py check --deploy --fail-level WARNING

release: deploy-check
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py collectstatic --noinput -v0

serve: release
	PATH="$(CURDIR)/$(BIN):$$PATH" bash scripts/procfile.sh

test: setup
	$(BIN)/python -m pytest

# Issue 7: 200 orders while workers are SIGKILLed and Redis and PostgreSQL restart (private ones) and the webhook
# backend answers 409, 422, 429, 500, resets and timeouts; prints the fault table (tests/faults/test_faults.py).
test-faults: setup
	$(BIN)/python -m pytest tests/faults -m faults -s -q

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy healthcommerce
	$(BIN)/lint-imports --no-cache
	$(BIN)/bandit -q -c pyproject.toml -r healthcommerce --severity-level medium
	SANDBOX_ENABLED=true $(BIN)/python manage.py makemigrations --check --dry-run

# The locks: requirements.in and requirements-dev.in compiled, every transitive dependency pinned with the sha256 of
# every file, installed with --require-hashes. Keeps the pinned versions; `make lock UPGRADE=Django` moves one.
lock: setup
	$(BIN)/pip install --quiet pip-tools
	$(BIN)/pip-compile -q --generate-hashes --strip-extras --no-emit-index-url --no-emit-find-links \
		$(if $(UPGRADE),--upgrade-package $(UPGRADE)) -o requirements.txt requirements.in
	$(BIN)/pip-compile -q --generate-hashes --strip-extras --no-emit-index-url --no-emit-find-links \
		$(if $(UPGRADE),--upgrade-package $(UPGRADE)) -o requirements-dev.txt requirements-dev.in

# Translations (ADR 0013): gather the marked strings into locale/es/LC_MESSAGES/django.po, translate what is new,
# then compile the .mo committed beside it (tests/test_locale.py checks both). Needs GNU gettext; the app does not.
messages: setup
	SANDBOX_ENABLED=true $(BIN)/python manage.py makemessages -l es --no-location --ignore=.venv --ignore=var \
		--ignore=commerce --ignore=benchmarks --ignore=tests --ignore=docs --ignore=static --ignore=scripts
	SANDBOX_ENABLED=true $(BIN)/python manage.py compilemessages -l es --ignore=.venv --ignore=var --ignore=commerce

# Medusa 2 from npm and its template database on the local PostgreSQL, for tests/fulfillment/backends/medusa/
# (commerce/medusa/README.md). Needs Node.js 20.19+, npm and PostgreSQL; a no-op when nothing changed.
medusa-setup:
	bash scripts/medusa.sh setup

# The independent HL7 v2 peer (node-hl7-client and node-hl7-server from npm, tests/peers/hl7/README.md) that the
# intake's peer, fault and benchmark tests run against; `npm ci` from its lock, a no-op while installed. Node.js 20.15+.
hl7-peer-setup:
	bash scripts/hl7peer.sh

# A no-op, without the network, while the installed venv matches the requirements file.
$(X12_STAMP): $(X12_REQUIREMENTS)
	$(PYTHON) -m venv $(X12_VENV)
	$(X12_VENV)/bin/pip install --quiet --disable-pip-version-check --require-hashes -r $(X12_REQUIREMENTS)
	rm -f $(X12_VENV)/.installed-*
	touch $(X12_STAMP)

x12-validator-setup: $(X12_STAMP)

bench: setup
	$(BIN)/python -m pytest benchmarks -q -s

clean:
	rm -rf var $(VENV) $(X12_VENV)
