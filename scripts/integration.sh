#!/usr/bin/env bash
# Run every integration test against the real components: a native Fabric
# network, nats-server, Prometheus, Keystone and Nova (Level 1: Nova's filter
# machinery; Level 2: a mini cloud with fake-driver computes). Each suite
# starts what it needs and stops it. With LEDGERFENCE_REQUIRE_INTEGRATION=1
# (set by `make test`), a missing component fails the run instead of skipping.
set -euo pipefail
cd "$(dirname "$0")/.."

export LEDGERFENCE_REQUIRE_INTEGRATION=${LEDGERFENCE_REQUIRE_INTEGRATION:-1}
# Test artifacts (the auditors' page's screenshots) are kept here.
export LEDGERFENCE_ARTIFACTS=${LEDGERFENCE_ARTIFACTS:-${LEDGERFENCE_CACHE:-$HOME/.cache/ledgerfence}/artifacts}
mkdir -p "$LEDGERFENCE_ARTIFACTS"
echo "integration: artifacts in $LEDGERFENCE_ARTIFACTS"
status=0
run() {
	local name=$1
	shift
	local start=$SECONDS
	echo "=== integration: $name"
	if "$@"; then
		echo "=== integration: $name passed in $((SECONDS - start)) s"
	else
		echo "=== integration: $name FAILED after $((SECONDS - start)) s"
		status=1
	fi
}

# Go suites one package at a time: the Fabric network and the mini cloud
# each want the machine's two cores to themselves.
# README's first command: the demonstration checks Nova's answer itself.
run demo ./scripts/demo.sh
run go go test -count=1 -p 1 -timeout 25m ./tests/integration/...
run nova ./tests/integration/nova/run.sh all
exit "$status"
