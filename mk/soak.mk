# The soak run (docs/soak.md, scripts/soak/): a release broker on loopback under a mixed
# workload with reconnects, sampled every second; fails on any loss, phantom or unbounded
# growth. Writes target/soak/ (CSV, summary, plot, broker log) and docs/soak.{md,png,csv}.
#
#   make soak                     30 minutes of load, then a drain and the checks
#   make soak SOAK_MINUTES=5      shorter (the growth check is weaker: it compares quarters)
#   make soak SOAK_RATE=2         every client twice as fast
#   make soak SOAK_DOC=           leave docs/ alone (results in target/soak/ only)

SOAK_MINUTES ?= 30
SOAK_RATE ?= 1
SOAK_DOC ?= docs/soak.md

.PHONY: soak

soak: release
	PY=$$(bash scripts/plot-python.sh soak) && \
	exec $$PY scripts/soak/soak.py --bin target/release/stompbox --minutes $(SOAK_MINUTES) \
	  --rate $(SOAK_RATE) --out target/soak --doc "$(SOAK_DOC)"
