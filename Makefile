# mailwire — see README.md. Two commands matter on a fresh machine:
#   make run    build and serve on the embedded default (--dev)
#   make test   the whole test suite, with the race detector
GO      ?= go
BIN     := bin
VERSION := $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)

.PHONY: build run cluster test vet fmt bench bench-long fuzz console-screenshots clean

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN)/mailwire ./cmd/mailwire
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN)/mailwire-bench ./cmd/mailwire-bench

run: build
	$(BIN)/mailwire serve --dev

# A local cluster: three NATS JetStream servers and three mailwire nodes
# (docs/CLUSTER.md). Ctrl-C stops them all.
cluster: build
	GO=$(GO) scripts/cluster

# The independent clients the tests drive (Python websockets, swaks,
# smtp-source, promtool, chromium) are installed first if missing. The
# engine and delivery suites run twice: on Pebble and on the cluster store.
test: vet
	scripts/test-deps
	MAILWIRE_REQUIRE_TOOLS=1 $(GO) test -race -count=1 -timeout 20m ./...
	@echo "the engine and delivery suites again, on the cluster store (embedded NATS):"
	MAILWIRE_TEST_STORE=nats MAILWIRE_REQUIRE_TOOLS=1 $(GO) test -race -count=1 -timeout 20m ./engine/ ./delivery/

vet:
	@unformatted=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$unformatted" ]; then echo "gofmt needed:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet ./...

fmt:
	gofmt -w $$(git ls-files '*.go')

# The short standard benchmark set (< 5 minutes); refreshes docs/BENCHMARKS.md figures.
bench: build
	$(BIN)/mailwire-bench standard --update-doc docs/BENCHMARKS.md

# Each fuzz target for 30 s.
fuzz:
	$(GO) test -run '^$$' -fuzz FuzzDecodeCommand -fuzztime 30s ./engine/
	$(GO) test -run '^$$' -fuzz FuzzParseFrames -fuzztime 30s ./engine/
	$(GO) test -run '^$$' -fuzz FuzzParse -fuzztime 30s ./mailparse/
	$(GO) test -run '^$$' -fuzz FuzzValidateURL -fuzztime 30s ./delivery/webhook/
	$(GO) test -run '^$$' -fuzz FuzzJSONEncoders -fuzztime 30s ./store/

# docs/console.png and docs/console-operator.png, taken by headless Chromium
# from a real server with sample data.
console-screenshots:
	MAILWIRE_CONSOLE_SCREENSHOTS=$(CURDIR)/docs $(GO) test -count=1 -run TestConsoleScreenshot ./engine/console/

clean:
	rm -rf $(BIN)
