# `make demo` and `make test` work from a clean clone: each sets up what it needs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
HOST ?= 127.0.0.1
PORT ?= 8000
DATA ?=
PG_URL ?= postgres://postgres@127.0.0.1:5432/postgres
REDIS_TEST_URL ?= redis://127.0.0.1:6379/15

.PHONY: help venv static migrate demo serve worker test chromium services clean

help:
	@echo "make demo    set up, load the demo store, pre-label it, serve at http://$(HOST):$(PORT) with a worker"
	@echo "make test    set up and run every test"

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

venv: $(STAMP)

# The UI has no build step: its sources are copied into static/ where Django serves them.
static:
	mkdir -p static/annotator
	cp -r frontend/src/. static/annotator/

migrate: venv
	$(BIN)/python manage.py migrate --no-input -v 0

demo: venv static migrate
	$(BIN)/python manage.py demo $(if $(DATA),--data $(DATA),)
	$(BIN)/python manage.py serve_with_worker --beat --host $(HOST) --port $(PORT)

chromium:
	@test -x /usr/bin/chromium || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium)

# PostgreSQL and Redis run on this machine; start them if they are down (CI starts from a fresh shell).
services:
	@pg_isready -q -h 127.0.0.1 || pg_ctlcluster --skip-systemctl-redirect $$(ls /etc/postgresql) main start || true
	@redis-cli -h 127.0.0.1 ping >/dev/null 2>&1 || redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no || true

# Tests keep their own var/ (queues, test database file, screenshots) apart from the demo's.
TEST_VAR := $(CURDIR)/var/test

test: venv static chromium services
	node --test frontend/tests/
	rm -rf $(TEST_VAR)/celery
	VAR_DIR=$(TEST_VAR) DATABASE_URL=$$(pg_isready -q -h 127.0.0.1 && echo $(PG_URL)) REDIS_TEST_URL=$(REDIS_TEST_URL) \
		$(BIN)/python -m pytest $(PYTEST_ARGS)

clean:
	rm -rf var static/annotator
