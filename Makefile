# auditpipe: one entry point per job. `make help` lists them.
SHELL := /bin/bash
GO ?= go
MODULES := schemas internal producer processor consumer deploy/local deploy/image deploy/helm
DATA_DIR ?= $(CURDIR)/data
ARGS ?=
BENCH_ARGS ?=
BIN := $(CURDIR)/bin
STATICCHECK_VERSION := v0.8.2
# Version and revision of the binaries (internal/cli): Go does not stamp
# VCS information in workspace (go.work) builds.
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo devel)
REVISION ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
LDFLAGS := -X github.com/auditpipe/auditpipe/internal/cli.version=$(VERSION) -X github.com/auditpipe/auditpipe/internal/cli.revision=$(REVISION)
# Tools built from the Go module proxy into .cache/tools/<version>/, once.
HELM_VERSION := v3.19.0
HELM := $(CURDIR)/.cache/tools/$(HELM_VERSION)/helm
# Image metadata; SOURCE_DATE_EPOCH makes every timestamp in it the commit's.
SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null || echo 0)
IMAGE ?= ghcr.io/auditpipe/auditpipe:$(VERSION)
IMAGE_LDFLAGS := -s -w -buildid= -X github.com/auditpipe/auditpipe/internal/cli.version=$(VERSION) -X github.com/auditpipe/auditpipe/internal/cli.revision=$(REVISION)

.PHONY: help build run demo test test-short test-kafka lint bench bench-micro clean image helm-tools

help: ## List the targets.
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | expand -t 14

build: ## Build the all-in-one program into bin/auditpipe.
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN)/auditpipe ./deploy/local/cmd/auditpipe

run: build ## Run the whole pipeline on an embedded broker and store (ARGS='--help' for flags).
	$(BIN)/auditpipe run --data-dir $(DATA_DIR) $(ARGS)

demo: build ## Run the pipeline and load the public sample events into it.
	$(BIN)/auditpipe run --data-dir $(DATA_DIR) --demo $(CURDIR)/testdata/public-audit $(ARGS)

# -timeout is per test binary: vlstore's -race suite took 13 minutes on a
# fresh machine (cold build cache, other packages compiling beside it).
test: helm-tools ## Unit and end-to-end tests of every module on the in-process broker, with -race.
	@set -e; for m in $(MODULES); do \
		echo "== $$m"; \
		(cd $$m && $(GO) test -race -count=1 -timeout 30m ./...); \
	done

test-short: ## The tests without -race, for a quick loop.
	@set -e; for m in $(MODULES); do (cd $$m && $(GO) test -count=1 ./...); done

test-kafka: ## E2E suites on Apache Kafka (1 broker), fault tests and the fleet test (3 brokers); needs java+mvn.
	./deploy/kafka/test-kafka.sh

lint: ## gofmt, go vet, and staticcheck when it installs from the module proxy.
	@out=$$(gofmt -l $(MODULES)); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	@set -e; for m in $(MODULES); do (cd $$m && $(GO) vet ./...); done
	@if $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) 2>/dev/null; then \
		set -e; for m in $(MODULES); do (cd $$m && $$($(GO) env GOPATH)/bin/staticcheck ./...); done; \
	else echo "staticcheck $(STATICCHECK_VERSION) did not install from the module proxy; skipped"; fi

bench: ## Every stage and the whole pipeline next to a Kafka pass-through baseline (BENCH_ARGS='--help').
	$(GO) build -o $(BIN)/auditbench ./deploy/local/cmd/auditbench
	$(BIN)/auditbench --out $(CURDIR)/bench/results $(BENCH_ARGS)

bench-micro: ## Go micro-benchmarks of every module (throughput and allocations).
	@set -e; for m in $(MODULES); do \
		(cd $$m && $(GO) test -run '^$$' -bench . -benchmem -count=1 ./...); \
	done

helm-tools: $(HELM) ## Build helm $(HELM_VERSION) from the Go module proxy (once) for the chart tests.

$(HELM):
	GOBIN=$(dir $(HELM)) GOWORK=off $(GO) install helm.sh/helm/v3/cmd/helm@$(HELM_VERSION)

image: ## Build the container image, without a container engine, into bin/image/ (OCI layout and docker-load tarball).
	@rm -rf $(BIN)/image && mkdir -p $(BIN)/image/bin
	@set -e; for p in producer/cmd/producer processor/cmd/processor consumer/cmd/consumer deploy/local/cmd/auditpipe; do \
		CGO_ENABLED=0 GOOS=linux $(GO) build -trimpath -buildvcs=false -ldflags '$(IMAGE_LDFLAGS)' -o $(BIN)/image/bin/ ./$$p; \
	done
	$(GO) run ./deploy/image/cmd/mkimage --bin-dir $(BIN)/image/bin --layout $(BIN)/image/oci --tar $(BIN)/image/auditpipe.tar \
		--ref $(IMAGE) --version $(VERSION) --revision $(REVISION) --source-date-epoch $(SOURCE_DATE_EPOCH)

clean: ## Remove build output (not the data directory).
	rm -rf $(BIN)
