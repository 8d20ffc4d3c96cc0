# ledgerfence: build, test, demo, bench. `make help` lists the targets.
SHELL := /bin/bash
GO ?= go
BIN ?= $(CURDIR)/bin
CACHE ?= $(or $(LEDGERFENCE_CACHE),$(HOME)/.cache/ledgerfence)
export LEDGERFENCE_CACHE := $(CACHE)

CMDS := filterd hostagent ledgerctl ledgerfence-cc lfbench

.PHONY: help build test unit integration demo bench fabric-bin fabric-up fabric-down deps lint
help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/'

build: ## build every command into ./bin
	@mkdir -p $(BIN)
	$(GO) build -o $(BIN)/ $(addprefix ./cmd/,$(CMDS))

demo: ## run filterd on the embedded ledger with the seed's hosts and VM1, and show Nova's answer
	./scripts/demo.sh

unit: ## unit tests (race detector on)
	$(GO) vet ./...
	$(GO) test -race -count=1 $$($(GO) list ./... | grep -v /tests/integration)

deps: ## install what the integration tests need (apt, Fabric binaries); idempotent
	./scripts/install-deps.sh

integration: deps ## integration tests against real Fabric, NATS, Prometheus, Keystone and Nova
	LEDGERFENCE_REQUIRE_INTEGRATION=1 ./scripts/integration.sh

test: unit integration ## every test: the command CI runs

bench: ## benchmarks: decision, embedded ledger, webhook end to end
	$(GO) test -run '^$$' -bench . -benchmem ./pkg/...
	$(GO) run ./cmd/lfbench

fabric-bin: ## build Fabric's binaries once into the cache
	./tools/fabric/build.sh

fabric-up: fabric-bin ## start the local Fabric network (orderer, two orgs, CAs, chaincode)
	./tests/integration/fabric/network/up.sh

fabric-down: ## stop the local Fabric network and remove its state
	./tests/integration/fabric/network/down.sh
