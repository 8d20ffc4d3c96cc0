# ledgerfence: build, test, demo, bench. `make help` lists the targets.
SHELL := /bin/bash
GO ?= go
BIN ?= $(CURDIR)/bin
CACHE ?= $(or $(LEDGERFENCE_CACHE),$(HOME)/.cache/ledgerfence)
export LEDGERFENCE_CACHE := $(CACHE)

CMDS := filterd hostagent ledgerctl ledgerfence-cc lfbench recorder

.PHONY: help build test unit lint integration demo bench bench-fabric fuzz fuzz-short fabric-bin fabric-up fabric-down fabric-smoke nova-l1 nova-cloud deps
help: ## list the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/'

build: ## build every command into ./bin
	@mkdir -p $(BIN)
	$(GO) build -o $(BIN)/ $(addprefix ./cmd/,$(CMDS))

demo: ## run filterd on the embedded ledger with the seed's hosts and VM1, and show Nova's answer
	./scripts/demo.sh

lint: ## gofmt, go vet, shellcheck
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt: files above need formatting"; exit 1; }
	$(GO) vet ./...
	@if command -v shellcheck >/dev/null; then shellcheck -x $$(git ls-files '*.sh') devstack-plugin/devstack/settings tests/integration/fabric/network/builders/ccaas/bin/*; \
	else echo "lint: shellcheck not installed (make deps installs it)"; fi

unit: ## unit tests (race detector on)
	$(GO) test -race -count=1 $$($(GO) list ./... | grep -v /tests/integration)

deps: ## install what the integration tests need (apt, Fabric binaries); idempotent
	./scripts/install-deps.sh

integration: deps ## integration tests against real Fabric, NATS, Prometheus, Keystone and Nova
	LEDGERFENCE_REQUIRE_INTEGRATION=1 ./scripts/integration.sh

fuzz-short: ## half a minute of each fuzz test of Nova's request: the decoder's against encoding/json, the webhook's answers
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeNova$$' -fuzztime 30s ./pkg/nova
	$(GO) test -run '^$$' -fuzz '^FuzzWebhook$$' -fuzztime 30s ./pkg/api

test: deps lint unit fuzz-short integration ## every test: the command CI runs

bench: ## benchmarks: decision, embedded ledger, webhook end to end
	$(GO) test -run '^$$' -bench . -benchmem ./pkg/...
	$(GO) run ./cmd/lfbench -c 1,2,8

bench-fabric: fabric-bin ## figures on a real Fabric network: commit latency (hosts, attestations, placements), webhook warm/cold, enforcement, network memory
	$(GO) test ./tests/integration/fabric -count=1 -run '^$$' -bench 'RegistrationCommit|Webhook1000Hosts|CommitToEnforcement|Governed|AttestationToWebhook|PlacementCommit|PlacementsRead|NetworkRSS' -benchtime 20x -v

fuzz: ## a minute of each fuzz test
	$(GO) test -run '^$$' -fuzz FuzzParseRules -fuzztime 60s ./pkg/filter
	$(GO) test -run '^$$' -fuzz FuzzWebhook -fuzztime 60s ./pkg/api
	$(GO) test -run '^$$' -fuzz FuzzDecodeNova -fuzztime 60s ./pkg/nova
	$(GO) test -run '^$$' -fuzz '^FuzzParse$$' -fuzztime 60s ./pkg/nova/notify

fabric-bin: ## build Fabric's binaries once into the cache
	./tools/fabric/build.sh

fabric-up: fabric-bin ## start the local Fabric network (orderer, two orgs, CAs, chaincode)
	./tests/integration/fabric/network/up.sh

fabric-down: ## stop the local Fabric network and remove its state
	./tests/integration/fabric/network/down.sh

fabric-smoke: fabric-bin ## bring the network up, check it, take it down
	./tests/integration/fabric/network/smoke.sh

nova-l1: ## the Python filter inside Nova's filter machinery, against a real filterd
	./tests/integration/nova/run.sh l1

nova-cloud: ## end-to-end moves in a mini cloud (keystone, placement, nova, fake computes)
	./tests/integration/nova/run.sh cloud
