# Client examples and smoke tests (clients/): stomp.py, the Ruby stomp gem and stompit, each
# run against a fresh target/debug/stompbox by clients/run-smoke.sh. Included by the Makefile,
# which builds the broker before test-clients runs.
#
#   make clients-deps          install the three clients (idempotent; quick when done)
#   make test-clients          smoke-test all three; fails if any failed
#   make test-clients-python   (or -ruby, -js) one language

CLIENTS_DIR := $(CURDIR)/clients
CLIENTS_VENV := $(CURDIR)/.venv
CLIENTS_PYTHON ?= python3
# Stamps: a dependency is reinstalled only when its manifest is newer than its stamp.
CLIENTS_PY_STAMP := $(CLIENTS_VENV)/.clients-deps
CLIENTS_JS_STAMP := $(CLIENTS_DIR)/js/node_modules/.package-lock.json
# Root runs apt-get itself (as CI does); anyone else goes through sudo.
CLIENTS_SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: clients-deps clients-deps-python clients-deps-ruby clients-deps-js
.PHONY: test-clients test-clients-python test-clients-ruby test-clients-js

clients-deps: clients-deps-python clients-deps-ruby clients-deps-js

clients-deps-python: $(CLIENTS_PY_STAMP)

# stompbox-client (clients/python) goes in editable, so the examples and tests always run the
# working copy; it is reinstalled when its packaging or a module changes, and also when the
# venv lacks it (a stamp left by an older checkout, or `pip uninstall`).
CLIENTS_PY_PKG := $(CLIENTS_DIR)/python/pyproject.toml $(wildcard $(CLIENTS_DIR)/python/stompbox_client/*.py)
ifeq ($(wildcard $(CLIENTS_VENV)/lib/python*/site-packages/stompbox_client-*.dist-info),)
.PHONY: $(CLIENTS_PY_STAMP)
endif

$(CLIENTS_PY_STAMP): $(CLIENTS_DIR)/python/requirements.txt $(CLIENTS_PY_PKG)
	@test -x $(CLIENTS_VENV)/bin/python || $(CLIENTS_PYTHON) -m venv $(CLIENTS_VENV)
	$(CLIENTS_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r $<
	$(CLIENTS_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -e $(CLIENTS_DIR)/python
	@touch $@

# Debian's ruby-stomp is the stomp gem; minitest ships with Debian's ruby. apt-get update
# runs only when the first install fails for lack of package lists (a fresh machine).
clients-deps-ruby:
	@ruby -e 'require "stomp"; require "minitest"' 2>/dev/null || { \
	  echo "installing ruby ruby-stomp"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  $(CLIENTS_SUDO) apt-get install -y ruby ruby-stomp || { \
	    $(CLIENTS_SUDO) apt-get update && $(CLIENTS_SUDO) apt-get install -y ruby ruby-stomp; }; }

clients-deps-js: $(CLIENTS_JS_STAMP)

$(CLIENTS_JS_STAMP): $(CLIENTS_DIR)/js/package.json $(CLIENTS_DIR)/js/package-lock.json
	cd $(CLIENTS_DIR)/js && npm ci --no-audit --no-fund
	@touch $@

# Runs every language even when one fails, then fails if any did.
test-clients: clients-deps
	@failed=""; \
	for lang in python ruby js; do \
	  echo "== client smoke: $$lang"; \
	  $(CLIENTS_DIR)/run-smoke.sh $$lang || failed="$$failed $$lang"; \
	done; \
	if [ -n "$$failed" ]; then echo "client smoke failed:$$failed"; exit 1; fi

test-clients-python: clients-deps-python
	$(CLIENTS_DIR)/run-smoke.sh python

test-clients-ruby: clients-deps-ruby
	$(CLIENTS_DIR)/run-smoke.sh ruby

test-clients-js: clients-deps-js
	$(CLIENTS_DIR)/run-smoke.sh js
