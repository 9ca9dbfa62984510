# Streamer tasks. `make test` is the command CI runs (see README.md).
GO ?= go
PKGS := ./...

.PHONY: build test test-long coverage bench lint proto proto-check fuzz

# The packages whose tests run goroutines: the suite runs them again under
# the race detector.
RACE_PKGS := ./match/... ./store/... ./service/... ./client/... ./gateway/... ./puller/... ./integration/... ./internal/... ./cmd/...

# The version is the nearest tag (or the commit) of the checkout; Go records the commit too.
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo devel)
build:
	$(GO) build -buildvcs=auto -ldflags "-X github.com/streamerd/streamer/internal/buildinfo.Version=$(VERSION)" -o bin/streamer ./cmd/streamer

# The test suite CI runs: unit, conformance and end-to-end tests, with the
# race detector on the packages that run goroutines. Differential and
# property tests run a fixed sample of their cases (under 10 minutes on 2
# cores); `make test-long` runs them all.
test:
	$(GO) vet $(PKGS)
	$(GO) test -count=1 -timeout 15m $(PKGS)
	$(GO) test -count=1 -race -timeout 15m $(RACE_PKGS)

# Every case of the differential and property tests (STREAMER_TEST_LONG=1).
test-long:
	STREAMER_TEST_LONG=1 $(GO) test -count=1 -timeout 60m $(PKGS)
	STREAMER_TEST_LONG=1 $(GO) test -count=1 -race -timeout 60m $(RACE_PKGS)

# Statement coverage of each package by its own tests.
coverage:
	$(GO) test -count=1 -timeout 15m -cover $(PKGS) | awk '/coverage:/ { for (i = 1; i <= NF; i++) { if ($$i ~ /^github.com\//) pkg = $$i; if ($$i == "coverage:") pct = $$(i+1) } printf "%-8s %s\n", pct, pkg }'

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./match/

lint:
	test -z "$$(gofmt -l $$(git ls-files '*.go'))" || (gofmt -l $$(git ls-files '*.go'); exit 1)
	$(GO) vet $(PKGS)
	$(GO) tool staticcheck $(PKGS)

# Short fuzzing passes over everything that parses outside input.
fuzz:
	$(GO) test -run '^$$' -fuzz FuzzCompileFilters -fuzztime 20s ./match/
	$(GO) test -run '^$$' -fuzz FuzzCompileCEL -fuzztime 20s ./match/
	$(GO) test -run '^$$' -fuzz FuzzCELNative -fuzztime 20s ./match/
	$(GO) test -run '^$$' -fuzz FuzzParseDocument -fuzztime 20s ./match/
	$(GO) test -run '^$$' -fuzz FuzzLogEntryDecoding -fuzztime 20s ./service/
	$(GO) test -run '^$$' -fuzz FuzzIngestRaw -fuzztime 20s ./service/
	$(GO) test -run '^$$' -fuzz FuzzParseStreams -fuzztime 20s ./store/redis/
	$(GO) test -run '^$$' -fuzz FuzzParseRequest -fuzztime 20s ./gateway/
	$(GO) test -run '^$$' -fuzz FuzzAppendJSON -fuzztime 20s ./puller/

# Regenerate the Go code of proto/**/*.proto (generators pinned in go.mod).
proto:
	bash proto/generate.sh

# Fail if the committed generated code differs from a fresh generation.
# Compares files, not git state, so it works in any checkout.
proto-check:
	@tmp="$$(mktemp -d)"; trap 'rm -rf "$$tmp"' EXIT; \
	bash proto/generate.sh "$$tmp/fresh" || exit 1; \
	mkdir -p "$$tmp/committed"; \
	(cd proto && find . -name '*.pb.go' -exec cp --parents {} "$$tmp/committed/" \;) || exit 1; \
	if ! diff -r "$$tmp/committed" "$$tmp/fresh"; then \
		echo "proto-check: generated code is stale: run make proto" >&2; exit 1; \
	fi; \
	echo "proto-check: generated code is up to date"
