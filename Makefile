# microbox — run untrusted code in throwaway microVMs.
# Artifacts (guest kernel, images) are cached under $(MICROBOX_CACHE),
# keyed by a hash of their recipe: a second build is instant.

GO          ?= go
BIN         := bin
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2
GOTESTFLAGS ?= -count=1
LANGS       ?=
BENCHTIME   ?= 5x
BURST       ?= 200
SOAK_JOBS     ?= 1000
SOAK_DURATION ?= 30m
export MICROBOX_CACHE ?= $(HOME)/.cache/microbox

.PHONY: run demo test lint fuzz bench soak bench-cpp kernel images layers agent build deps playground inspector e2b clean help

help: ## list the targets
	@grep -E '^[a-z]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

run: deps images ## serve the API on localhost:2358 (builds what is missing, starts Redis)
	$(BIN)/microbox serve

demo: deps images ## run examples/hello.py once in a fresh microVM
	$(BIN)/microbox run examples/hello.py -- from make demo

test: deps images ## run every test, with real QEMU, kernel and images
	$(GO) test $(GOTESTFLAGS) -timeout 80m ./...
	@# The race detector over every package but the five whose tests boot
	@# VMs by the dozen (a second pass of those would double CI; their
	@# QEMU time is not the detector's to check): about 1.5 min here.
	$(GO) test $(GOTESTFLAGS) -race -timeout 30m $$($(GO) list ./... | grep -vE 'microbox/(api|sandbox|cmd/microbox|internal/hostileagent|benchmarks)$$')
	@# Of those five, the tests where host goroutines race each other: the
	@# pool's hand-out under concurrent takers; results, waiters and
	@# callbacks across a Redis crash; the API's fuzz corpora.
	$(GO) test $(GOTESTFLAGS) -race -run 'TestPool' -timeout 20m ./sandbox/
	$(GO) test $(GOTESTFLAGS) -race -run 'TestRedisRestartUnderWaitAndCallbacks|TestRedisCrashWhileServing|TestCallbackReceived|TestBatchDeleteAndProcessing|Fuzz' -timeout 20m ./api/

lint: ## gofmt, go vet and staticcheck
	@test -z "$$(gofmt -l .)" || { echo "gofmt needed:"; gofmt -l .; exit 1; }
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...
	@# The guest programs built only under their tags, which ./... skips.
	$(GO) vet -tags v2probe ./jailer/cgroup/internal/v2probe/
	$(GO) vet -tags hostileagent ./internal/hostileagent/agent/
	$(GO) run $(STATICCHECK) -tags v2probe ./jailer/cgroup/internal/v2probe/
	$(GO) run $(STATICCHECK) -tags hostileagent ./internal/hostileagent/agent/

fuzz: ## run every fuzz target one at a time for a million executions and report them (FUZZTIME=10s or 1000x for a short pass, FUZZPARALLEL=2 for both cores)
	scripts/fuzz

bench: deps images ## measure boot and run latency (see benchmarks/README.md)
	MICROBOX_BENCH_README=1 $(GO) test -run '^$$' -bench . -benchtime $(BENCHTIME) -timeout 60m ./benchmarks/
	MICROBOX_BENCH_BURST=$(BURST) $(GO) test -run '^$$' -bench 'BenchmarkAPI/burst' -benchtime 1x -timeout 60m ./benchmarks/

soak: deps images ## a long mixed load through `microbox serve`: nothing lost or leaked, memory sampled (SOAK_JOBS, SOAK_DURATION; not in CI)
	$(GO) run ./benchmarks/soak -bin $(BIN)/microbox -jobs $(SOAK_JOBS) -duration $(SOAK_DURATION)

bench-cpp: deps build kernel ## measure C++ compiles by header, with and without the precompiled bits/stdc++.h (one run)
	$(BIN)/microbox images build cpp
	MICROBOX_BENCH_ROUNDS=3 $(GO) test -run '^$$' -bench 'BenchmarkCppHeaders' -benchtime 1x -timeout 90m ./benchmarks/

kernel: build ## build the guest kernel (about 5 minutes, then cached)
	$(BIN)/microbox kernel build

images: build ## build the kernel, language images and snapshots (root; LANGS="python3 c" for some)
	@# The kernel compiles while the layers download and install: neither
	@# needs the other, and only the snapshots need both.
	@$(MAKE) --no-print-directory -j2 kernel layers
	$(BIN)/microbox images build $(LANGS)

layers: build
	$(BIN)/microbox images build --no-snapshots $(LANGS)

build: agent ## build the microbox binary and the guest agent
	$(GO) build -o $(BIN)/microbox ./cmd/microbox

agent: ## build the guest agent (static)
	CGO_ENABLED=0 $(GO) build -o $(BIN)/microbox-agent ./cmd/microbox-agent

playground: ## rebuild the web playground's bundle (api/playground/) from web/src with npm; commit the result
	cd web && npm ci --no-audit --no-fund && npm run build

inspector: ## install the MCP inspector's CLI (npm ci in e2e/mcp), which the stdio test of `microbox mcp` drives
	cd e2e/mcp && npm ci --no-audit --no-fund

e2b: ## install E2B's SDKs from npm (e2e/e2b) for api/e2b_test.go's checks
	cd e2e/e2b && npm ci --no-audit --no-fund

deps: ## install the Debian packages microbox needs (root)
	@scripts/install-deps

clean: ## remove built binaries (the artifact cache stays)
	rm -rf $(BIN)
