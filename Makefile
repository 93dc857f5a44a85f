# Portal: `make run` serves the site locally; `make test` runs the whole suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export FLASK_APP := portal

.PHONY: run test install install-test chromium nginx lint clean bench serve

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed-run: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[test]'
	touch $@ $(VENV)/.installed-run

install: $(VENV)/.installed-run
install-test: $(VENV)/.installed-test

DEMO_IDP := http://127.0.0.1:5001
INSTANCE := $(or $(PORTAL_INSTANCE_PATH),instance)

## Serve Portal on http://127.0.0.1:5000 (SQLite under instance/), with the demo identity
## provider on 127.0.0.1:5001 as a separate process (development only, never in production).
run: install
	$(BIN)/flask db upgrade
	$(BIN)/flask ensure-demo --with-idp $(DEMO_IDP)
	@$(BIN)/python -m portal.devidp --port 5001 --client-id portal-demo \
		--client-secret-file $(INSTANCE)/demo-idp-client-secret \
		--redirect-uri http://127.0.0.1:5000/sso/demo-identity-provider/callback \
		--post-logout-redirect-uri http://127.0.0.1:5000/ & \
	idp=$$!; trap 'kill $$idp 2>/dev/null' EXIT INT TERM; \
	$(BIN)/flask run --host 127.0.0.1 --port 5000

## Run the whole suite (browser tests included: Chromium and nginx are installed when missing).
test: install-test chromium nginx
	$(BIN)/pytest

## Debian's Chromium for the Playwright browser tests (Playwright cannot download browsers here).
chromium:
	@if [ -x /usr/bin/chromium ]; then :; \
	elif [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null; then \
		echo "Installing Chromium from Debian's packages..."; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	else \
		echo "Chromium is missing: install Debian's 'chromium' package (as root) to run the browser tests."; \
		if [ "$$CI" = "true" ]; then exit 1; fi; \
	fi

## Debian's nginx, for the deployment tests (`nginx -t` on the shipped sites); never started here.
nginx:
	@if command -v nginx >/dev/null || [ -x /usr/sbin/nginx ]; then :; \
	elif [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null; then \
		echo "Installing nginx from Debian's packages..."; \
		apt-get update -qq && RUNLEVEL=1 DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx >/dev/null; \
	else \
		echo "nginx is missing: install Debian's 'nginx' package (as root) to run the deployment tests."; \
		if [ "$$CI" = "true" ]; then exit 1; fi; \
	fi

## Production-like local run: migrations, then gunicorn with gunicorn.conf.py on 127.0.0.1:8000.
## PORTAL_ENV stays development unless set; SECRET_KEY comes from the environment, else (outside
## production) from $(INSTANCE)/secret-key, generated once.
SERVE_BASE_URL := $(or $(PORTAL_BASE_URL),http://127.0.0.1:8000)
serve: install
	@mkdir -p $(INSTANCE)
	@if [ -z "$$SECRET_KEY" ] && [ "$$PORTAL_ENV" != production ] && [ ! -s $(INSTANCE)/secret-key ]; then \
		(umask 077; $(BIN)/python -c 'import secrets; print(secrets.token_urlsafe(48))' > $(INSTANCE)/secret-key); \
		echo "Generated a development SECRET_KEY into $(INSTANCE)/secret-key"; \
	fi
	@if [ -z "$$SECRET_KEY" ] && [ "$$PORTAL_ENV" != production ]; then SECRET_KEY=$$(cat $(INSTANCE)/secret-key); fi; \
	export SECRET_KEY PORTAL_BASE_URL=$(SERVE_BASE_URL); \
	$(BIN)/flask db upgrade && exec $(BIN)/gunicorn -c gunicorn.conf.py wsgi:app

## Login storm, Portal beside the hand-written baseline (benchmarks/README.md): on SQLite, then on
## PostgreSQL when BENCH_DATABASE_URL answers (a scratch database is created there and dropped).
N ?= 2000
C ?= 32
ROUNDS ?= 3
BENCH_ARGS ?=
BENCH_DATABASE_URL ?= postgresql://postgres@127.0.0.1:5432/test

$(VENV)/.installed-bench: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[bench]'
	touch $@ $(VENV)/.installed-run

bench: $(VENV)/.installed-bench
	$(BIN)/python benchmarks/login_storm.py -n $(N) -c $(C) --rounds $(ROUNDS) $(BENCH_ARGS)
	@if $(BIN)/python -c 'import sys, psycopg; psycopg.connect(sys.argv[1], connect_timeout=3).close()' \
		'$(BENCH_DATABASE_URL)' 2>/dev/null; then \
		$(BIN)/python benchmarks/login_storm.py --database-url '$(BENCH_DATABASE_URL)' \
			-n $(N) -c $(C) --rounds $(ROUNDS) $(BENCH_ARGS); \
	else \
		echo "PostgreSQL at BENCH_DATABASE_URL is not reachable: skipped the PostgreSQL run."; \
	fi

lint: install-test
	$(BIN)/ruff check portal tests benchmarks
	$(BIN)/ruff format --check portal tests benchmarks

clean:
	rm -rf $(VENV) instance .pytest_cache
