# Portal: `make run` serves the site locally; `make test` runs the whole suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export FLASK_APP := portal

.PHONY: run test install install-test chromium lint clean

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

## Run the whole suite (browser tests included: Chromium is installed when missing).
test: install-test chromium
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

lint: install-test
	$(BIN)/ruff check portal tests benchmarks
	$(BIN)/ruff format --check portal tests benchmarks

clean:
	rm -rf $(VENV) instance .pytest_cache
