# Stompbox: the front door. `make run` serves, `make test` runs every test (what CI runs after
# `make lint`). Everything a test needs is installed by these targets on a fresh machine.

CARGO ?= cargo
export CARGO_TERM_COLOR ?= never

.PHONY: all build release run test test-deps sqlite-deps test-rust lint fmt bench fuzz-check ci clean
.PHONY: test-against-activemq

all: build

build:
	$(CARGO) build

release:
	$(CARGO) build --release

# Build (release) and serve with config/stompbox.toml: STOMP on 127.0.0.1:61613, data in ./data.
run: release
	mkdir -p data
	./target/release/stompbox serve --config config/stompbox.toml

# Every test: unit, integration, proptests, the protocol conformance suite (which starts the
# built binary itself), the HA suite (with a real HAProxy), the store-failure suite, the fuzz
# corpus as regression tests, the client smoke tests and the web console's browser test.
# Missing tools (haproxy, sqlite3, chromium, ruby-stomp, python and npm packages) are installed
# first. The Rust tests build with the test-only `fault-injection` feature (src/store/faults.rs:
# tests/store_failure.rs makes the store's fsync fail through it); `build`, `release` and `run`
# never include it.
TEST_FEATURES := --features fault-injection
test: build test-deps test-rust fuzz-check test-clients test-console

test-deps: ha-deps clients-deps console-deps sqlite-deps

# The sqlite3 shell: the operator's way into the store, which tests run as documented.
sqlite-deps:
	@if command -v sqlite3 >/dev/null 2>&1; then \
		echo "sqlite3: $$(sqlite3 -version | cut -d' ' -f1)"; \
	else \
		export DEBIAN_FRONTEND=noninteractive; \
		SUDO=$$( [ "$$(id -u)" -eq 0 ] || echo sudo ); \
		$$SUDO apt-get install -y --no-install-recommends sqlite3 \
		|| { $$SUDO apt-get update && $$SUDO apt-get install -y --no-install-recommends sqlite3; }; \
	fi

test-rust: ha-deps sqlite-deps
	$(CARGO) test --all-targets $(TEST_FEATURES)

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings
	$(CARGO) clippy --all-targets $(TEST_FEATURES) -- -D warnings
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --no-deps --document-private-items

fmt:
	$(CARGO) fmt --all

# The fuzz targets need nightly to run (cargo fuzz); on stable we make sure they compile.
fuzz-check:
	@if [ -f fuzz/Cargo.toml ]; then $(CARGO) check --manifest-path fuzz/Cargo.toml; fi

# Micro benchmarks, then the scenario set against a release stompbox and, side by side in the
# same run, ActiveMQ and RabbitMQ (scripts/bench.sh: installs Debian's activemq and
# rabbitmq-server when missing, skips a broker that cannot run, prints one table with ratios and
# writes docs/benchmarks.md + docs/benchmarks.png; BENCH_BROKERS=stompbox for stompbox alone).
# On the same brokers, the client libraries applications use (stomp.py, the stomp gem, stompit
# over TCP, @stomp/stompjs over WebSocket; scripts/compare/clients/, installed by clients-deps)
# with their CPU and the broker's (BENCH_CLIENTS=0 skips them, BENCH_CLIENTS_ONLY=1 runs only
# these). Then a network of three stompbox brokers: throughput across one bridge and two hops
# as ratios to one broker in the same run (BENCH_NET_ONLY=1 runs only these; docs/network.md).
bench:
	$(CARGO) bench --bench codec
	$(CARGO) bench --bench session
	$(CARGO) bench --bench selector
	bash scripts/bench.sh

# The protocol suite against ActiveMQ Classic 5.17 from Debian's `activemq` package (installed
# when missing): scripts/activemq/run.sh starts a private broker on loopback, runs
# `cargo test --test protocol` at it and always stops it. Not part of `test`. Tests that need our
# own broker are excluded by name (protocol-tests/not-applicable.txt); where ActiveMQ differs,
# the tests assert what it does (docs/compatibility.md). TESTS=queue:: runs only the tests whose
# names contain it.
test-against-activemq:
	bash scripts/activemq/run.sh $(TESTS)

ci: lint test

clean:
	$(CARGO) clean
	rm -rf .venv clients/js/node_modules

# Fragments: mk/clients.mk (clients-deps, test-clients), mk/ha.mk (ha-deps),
# mk/console.mk (console-deps, test-console), mk/soak.mk (soak: not part of test, it takes
# 30 minutes). A missing fragment's targets are no-ops.
include $(wildcard mk/*.mk)
ifeq ($(wildcard mk/clients.mk),)
clients-deps test-clients: ;
endif
ifeq ($(wildcard mk/ha.mk),)
ha-deps: ;
endif
ifeq ($(wildcard mk/console.mk),)
console-deps test-console: ;
endif
