# Burrow — make targets. `make run` starts the local demo (flags in ARGS, e.g.
# make run ARGS="--http 0.0.0.0:8081"); `make test` runs every check.
GO          ?= go
STATICCHECK ?= $(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2
BIN         := bin/burrow
DIST        := dist
VERSION     ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS     := -s -w -X main.version=$(VERSION)

.PHONY: build release run test lint fmt-check vet staticcheck unit release-check fuzz bench bench-quick clean

# A static binary (no cgo, no libc): it runs on any Linux of its architecture, glibc or musl.
build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/burrow

# $(DIST)/burrow_$(VERSION)_<os>_<arch>.tar.gz for each platform, and $(DIST)/SHA256SUMS.
release:
	GO='$(GO)' VERSION='$(VERSION)' DIST='$(DIST)' sh deploy/release.sh

run: build
	./$(BIN) demo $(ARGS)

test: fmt-check vet staticcheck unit release-check

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...

staticcheck:
	$(STATICCHECK) ./...

unit:
	command -v redis-server >/dev/null || (apt-get update && apt-get install -y redis-server)
	$(GO) test -race -count=1 -timeout 20m ./...
	cd third_party/yamux && $(GO) test -race -short -count=1 -timeout 5m ./...

# `make build` gives a static ELF and `make release` archives that match SHA256SUMS
# (cross-compiles every platform, so it runs once here rather than inside `make unit`).
release-check:
	BURROW_RELEASE_CHECK=1 $(GO) test -count=1 -timeout 15m -run '^TestRelease' ./internal/release

# Each fuzz target for a while (the seed corpus already runs in `make unit`);
# FUZZTIME=2m for longer.
FUZZTIME ?= 30s
fuzz:
	@for f in $$(grep -l '^func Fuzz' $$(git ls-files '*_test.go' | grep -v '^third_party/')); do \
		pkg=./$$(dirname $$f); \
		for t in $$(sed -n 's/^func \(Fuzz[A-Za-z0-9_]*\)(.*/\1/p' $$f); do \
			echo "$$pkg $$t"; $(GO) test -run='^$$' -fuzz="^$$t$$" -fuzztime=$(FUZZTIME) $$pkg || exit 1; \
		done; done

bench: build
	command -v nginx >/dev/null && command -v wrk >/dev/null || (apt-get update && apt-get install -y nginx wrk)
	$(GO) run ./cmd/burrow-bench -bin $(BIN) -out BENCH.md

bench-quick: build
	command -v nginx >/dev/null && command -v wrk >/dev/null || (apt-get update && apt-get install -y nginx wrk)
	$(GO) run ./cmd/burrow-bench -bin $(BIN) -quick -out BENCH-quick.md

clean:
	rm -rf bin $(DIST)
