# Ferry's build and test entry points. `make test` is what CI runs.

GO       ?= go
FUZZTIME ?= 10s
BIN      ?= bin/ferry

# Fuzz targets, as package:target.
FUZZ_TARGETS = \
	./internal/spec:FuzzParseConnector \
	./internal/jsonpath:FuzzScan \
	./internal/jsonscan:FuzzValue \
	./internal/normalize:FuzzNormalize \
	./internal/schema:FuzzClassify \
	./internal/source/rest:FuzzLinkNext \
	./internal/httpx:FuzzRedactorURL \
	./internal/httpx:FuzzParseRetryAfter \
	./internal/dest/postgres:FuzzNumeric

.PHONY: build test lint unit fuzz demo bench clean

## build: a static ferry binary in bin/
build:
	CGO_ENABLED=0 $(GO) build -trimpath -o $(BIN) ./cmd/ferry

## test: formatting, vet, every test against the real databases, and a short run of every fuzz target
test: lint unit fuzz

lint:
	@unformatted=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$unformatted" ]; then echo "gofmt needed:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet ./...

unit:
	$(GO) test -race -count=1 -timeout 20m ./...

fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; name=$${t##*:}; \
		echo "fuzz $$pkg $$name ($(FUZZTIME))"; \
		$(GO) test -run='^$$' -fuzz="^$$name$$" -fuzztime=$(FUZZTIME) $$pkg; \
	done

## bench: the end-to-end throughput and memory benchmark (see bench/README.md)
bench:
	$(GO) run ./bench -memcheck

## demo: sync the sample shop API into ./ferry-demo.db
demo:
	$(GO) run ./cmd/ferry demo

clean:
	rm -rf bin ferry-demo.db ferry-demo.db-wal ferry-demo.db-shm
