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
export MICROBOX_CACHE ?= $(HOME)/.cache/microbox

.PHONY: run demo test lint fuzz bench kernel images agent build deps playground clean help

help: ## list the targets
	@grep -E '^[a-z]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

run: deps build kernel images ## serve the API on localhost:2358 (builds what is missing, starts Redis)
	$(BIN)/microbox serve

demo: deps build kernel images ## run examples/hello.py once in a fresh microVM
	$(BIN)/microbox run examples/hello.py -- from make demo

test: deps build kernel images ## run every test, with real QEMU, kernel and images
	$(GO) test $(GOTESTFLAGS) -timeout 80m ./...
	@# The pool's hand-out under concurrent takers, with the race detector.
	$(GO) test $(GOTESTFLAGS) -race -run 'TestPool' -timeout 20m ./sandbox/

lint: ## gofmt, go vet and staticcheck
	@test -z "$$(gofmt -l .)" || { echo "gofmt needed:"; gofmt -l .; exit 1; }
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...

fuzz: ## run every fuzz target one at a time and report its executions (FUZZTIME=10s for a short pass)
	scripts/fuzz

bench: deps build kernel images ## measure boot and run latency (see benchmarks/README.md)
	MICROBOX_BENCH_README=1 $(GO) test -run '^$$' -bench . -benchtime $(BENCHTIME) -timeout 60m ./benchmarks/
	MICROBOX_BENCH_BURST=$(BURST) $(GO) test -run '^$$' -bench 'BenchmarkAPI/burst' -benchtime 1x -timeout 60m ./benchmarks/

kernel: build ## build the guest kernel (about 5 minutes, then cached)
	$(BIN)/microbox kernel build

images: build ## build the language images (root; LANGS="python3 c" for some)
	$(BIN)/microbox images build $(LANGS)

build: agent ## build the microbox binary and the guest agent
	$(GO) build -o $(BIN)/microbox ./cmd/microbox

agent: ## build the guest agent (static)
	CGO_ENABLED=0 $(GO) build -o $(BIN)/microbox-agent ./cmd/microbox-agent

playground: ## rebuild the web playground's bundle (api/playground/) from web/src with npm; commit the result
	cd web && npm ci --no-audit --no-fund && npm run build

deps: ## install the Debian packages microbox needs (root)
	@scripts/install-deps

clean: ## remove built binaries (the artifact cache stays)
	rm -rf $(BIN)
