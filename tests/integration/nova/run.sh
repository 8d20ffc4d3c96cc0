#!/bin/bash
# Run ledgerfence's Nova integration tests; CI's single entry point.
#
#   run.sh [l1|cloud|all]      (default all)
#
#   l1     LedgerfenceFilter inside Nova's own filter machinery (python3-nova)
#          against a real filterd, the nova-api guard, the devstack plugin's
#          phases: ~2 min on a fresh machine with apt.
#   cloud  the mini cloud (keystone, placement, glance, nova api, conductor,
#          scheduler, three fake computes) end to end, with Nova's versioned
#          notifications recorded as placements by two recorders and host
#          agents as the second witness, and the devstack plugin with the
#          project's local Fabric network: ~8 min.
#
# Installs what is missing (install.sh), builds filterd (and hostagent) from
# this repository, installs the filter with pip into a scratch directory,
# runs the tests with Debian's /usr/bin/python3 and exits non-zero if any
# fails. Components that cannot be built or started are failures here
# (LEDGERFENCE_REQUIRE_INTEGRATION=1). Figures (timings) are written to
# $LEDGERFENCE_NOVA_RESULTS (default: a scratch directory) and printed,
# never asserted: the machines are shared and noisy. On failure the scratch
# directory, with every service's log, is kept.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../../.." && pwd)
level=${1:-all}
case "$level" in
l1 | cloud | all) ;;
*)
	echo "usage: $0 [l1|cloud|all]" >&2
	exit 2
	;;
esac

export PATH=/usr/local/go/bin:$PATH
export LEDGERFENCE_REQUIRE_INTEGRATION=${LEDGERFENCE_REQUIRE_INTEGRATION:-1}
WORK=$(mktemp -d /tmp/ledgerfence-nova-run.XXXXXX)
rc=1
# Keep the scratch directory (logs of every service) when a test failed.
trap 'if [ "$rc" = 0 ]; then rm -rf "$WORK"; else echo "run.sh: logs kept in $WORK" >&2; fi' EXIT
export LEDGERFENCE_NOVA_RESULTS=${LEDGERFENCE_NOVA_RESULTS:-$WORK/results}
mkdir -p "$LEDGERFENCE_NOVA_RESULTS" "$WORK/bin"
T0=$(date +%s)
say() { echo "== run.sh +$(($(date +%s) - T0))s: $*"; }

if [ "$level" = l1 ]; then
	"$HERE/install.sh" l1
else
	"$HERE/install.sh" cloud
fi
say "packages present"

if [ -z "${LEDGERFENCE_FILTERD:-}" ]; then
	(cd "$REPO" && go build -o "$WORK/bin/filterd" ./cmd/filterd)
	export LEDGERFENCE_FILTERD=$WORK/bin/filterd
fi
if [ -z "${LEDGERFENCE_HOSTAGENT:-}" ] && [ -d "$REPO/cmd/hostagent" ]; then
	if (cd "$REPO" && go build -o "$WORK/bin/hostagent" ./cmd/hostagent); then
		export LEDGERFENCE_HOSTAGENT=$WORK/bin/hostagent
	else
		say "hostagent does not build: hosts are registered through filterd's REST API"
	fi
fi
# ledgerctl and the recorder, for the mini cloud's residency evidence.
if [ "$level" != l1 ]; then
	for cmd in ledgerctl recorder; do
		var=LEDGERFENCE_${cmd^^}
		if [ -z "${!var:-}" ]; then
			(cd "$REPO" && go build -o "$WORK/bin/$cmd" "./cmd/$cmd")
			export "$var=$WORK/bin/$cmd"
		fi
	done
fi
say "filterd built"

# The filter as an operator installs it: a pip package, not the source tree
# (built from a copy, so that no build files land in the repository).
cp -r "$REPO/devstack-plugin" "$WORK/devstack-plugin"
/usr/bin/python3 -m pip install --quiet --root-user-action=ignore --no-build-isolation --no-deps \
	--no-index --target "$WORK/site" "$WORK/devstack-plugin"
export PYTHONPATH=$WORK/site

cd "$HERE"
rc=0
if [ "$level" != cloud ]; then
	say "Level 1: Nova's filter machinery"
	/usr/bin/python3 -m unittest -v l1.test_filter l1.test_api_guard \
		l1.test_devstack_plugin.TestDevstackPlugin || rc=1
fi
if [ "$level" != l1 ]; then
	say "Level 2: the mini cloud"
	/usr/bin/python3 -m unittest -v cloud.test_cloud || rc=1
	say "the devstack plugin with the Fabric backend"
	/usr/bin/python3 -m unittest -v l1.test_devstack_plugin.TestDevstackPluginFabric || rc=1
fi

for f in "$LEDGERFENCE_NOVA_RESULTS"/*.json; do
	[ -f "$f" ] || continue
	echo "-- $(basename "$f"): $(tr -d '\n ' <"$f")"
done
say "done, exit $rc"
exit "$rc"
