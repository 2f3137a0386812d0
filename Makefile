# Ferry's build and test entry points. `make test` is what CI runs.

GO       ?= go
BIN      ?= bin/ferry
# FUZZTIME, when set (e.g. 60s or 1000000x), overrides every target's budget.
FUZZTIME ?=

# Fuzz targets, as package:target:budget. The budgets are execution counts
# of about 10 s each on the 2-core CI machine. A wall-clock -fuzztime can
# fail with a bare "context deadline exceeded" and no failing input on
# Go 1.26 (a race in the fuzz coordinator, golang/go#75804, fixed in Go
# 1.27); a count has no deadline to race.
FUZZ_TARGETS = \
	./internal/spec:FuzzParseConnector:120000x \
	./internal/schedule:FuzzParse:70000x \
	./internal/spec:FuzzParsePipeline:80000x \
	./internal/jsonpath:FuzzScan:600000x \
	./internal/jsonscan:FuzzValue:700000x \
	./internal/normalize:FuzzNormalize:600000x \
	./internal/schema:FuzzClassify:500000x \
	./internal/source/rest:FuzzLinkNext:180000x \
	./internal/redact:FuzzRedactorURL:250000x \
	./internal/redact:FuzzRedactorJSON:40000x \
	./internal/redact:FuzzParseURL:250000x \
	./internal/httpx:FuzzParseRetryAfter:200000x \
	./internal/httpx:FuzzAPIMessage:100000x \
	./internal/httpx:FuzzParseLimits:140000x \
	./internal/auth/hmac:FuzzCanonicalQuery:70000x \
	./internal/source/rest:FuzzConnectionFields:90000x \
	./internal/dest/postgres:FuzzNumeric:140000x \
	./internal/decode:FuzzCSV:100000x \
	./internal/decode:FuzzXML:100000x \
	./internal/transform:FuzzTransform:100000x \
	./internal/source/webhook/verify:FuzzStripeSignature:80000x \
	./internal/source/webhook/verify:FuzzStandardSignature:120000x \
	./internal/tableapi:FuzzParseRequest:30000x \
	./internal/tableapi:FuzzDecodeCursor:30000x

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
	$(GO) mod tidy -diff
	$(GO) tool staticcheck ./...

unit:
	$(GO) test -race -count=1 -timeout 20m ./...

fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; rest=$${t#*:}; name=$${rest%%:*}; budget=$${rest#*:}; \
		ft='$(FUZZTIME)'; budget=$${ft:-$$budget}; \
		echo "fuzz $$pkg $$name ($$budget)"; \
		$(GO) test -run='^$$' -fuzz="^$$name$$" -fuzztime=$$budget $$pkg; \
	done

## bench: the end-to-end throughput and memory benchmark (see bench/README.md)
bench:
	$(GO) run ./bench -memcheck

## demo: sync the sample shop API into ./ferry-demo.db
demo:
	$(GO) run ./cmd/ferry demo

clean:
	rm -rf bin ferry-demo.db ferry-demo.db-wal ferry-demo.db-shm
