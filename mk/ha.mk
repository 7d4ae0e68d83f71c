# High availability tests (tests/ha.rs) need a real HAProxy in front of a broker pair.
# `make ha-deps` installs Debian's haproxy when it is missing; `make test` depends on it.

.PHONY: ha-deps test-ha

ha-deps:
	@if command -v haproxy >/dev/null 2>&1; then \
		echo "haproxy: $$(haproxy -v | head -n 1)"; \
	else \
		export DEBIAN_FRONTEND=noninteractive; \
		SUDO=$$( [ "$$(id -u)" -eq 0 ] || echo sudo ); \
		$$SUDO apt-get install -y --no-install-recommends haproxy \
		|| { $$SUDO apt-get update && $$SUDO apt-get install -y --no-install-recommends haproxy; }; \
	fi

# The HA tests alone (they start broker processes, so they run serially within the file).
test-ha: build ha-deps
	$(CARGO) test --test ha
