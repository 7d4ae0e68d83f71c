# The browser tests (tests/console/) of the web console and of the web client page at /client/:
# headless Debian Chromium driven by npm playwright-core, against target/debug/stompbox (the
# Makefile builds it before tests run).
#
#   make console-deps   install chromium (apt) when /usr/bin/chromium is missing, and
#                       tests/console/node_modules (npm ci) when it is older than the lock
#   make test-console   the browser tests (node --test); they fail, saying so, when Chromium
#                       is still missing after console-deps

CONSOLE_DIR := $(CURDIR)/tests/console
CONSOLE_CHROMIUM ?= /usr/bin/chromium
# npm ci writes node_modules/.package-lock.json: newer than the lock means up to date.
CONSOLE_JS_STAMP := $(CONSOLE_DIR)/node_modules/.package-lock.json
# Root runs apt-get itself (as CI does); anyone else goes through sudo.
CONSOLE_SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: console-deps console-deps-chromium test-console

console-deps: console-deps-chromium $(CONSOLE_JS_STAMP)

# apt-get update runs only when the first install fails for lack of package lists (a fresh
# machine). A failed install fails the target, with the reason.
console-deps-chromium:
	@if [ -x $(CONSOLE_CHROMIUM) ]; then \
	  echo "chromium: $(CONSOLE_CHROMIUM)"; \
	else \
	  echo "installing chromium"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  $(CONSOLE_SUDO) apt-get install -y --no-install-recommends chromium fonts-dejavu-core || { \
	    $(CONSOLE_SUDO) apt-get update && \
	    $(CONSOLE_SUDO) apt-get install -y --no-install-recommends chromium fonts-dejavu-core; } || \
	  { echo "ERROR: could not install chromium (apt-get), which the console browser test needs" >&2; exit 1; }; \
	fi

$(CONSOLE_JS_STAMP): $(CONSOLE_DIR)/package.json $(CONSOLE_DIR)/package-lock.json
	cd $(CONSOLE_DIR) && npm ci --no-audit --no-fund
	@touch $@

test-console: console-deps
	node --test $(CONSOLE_DIR)/
