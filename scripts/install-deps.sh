#!/usr/bin/env bash
# Install what the integration tests need on a fresh Debian machine (haproxy is
# the high-availability test's load balancer), and build Fabric's binaries once
# into the cache. Idempotent: what is present is kept.
#
# Debian packages (apt, one install at a time) and the Fabric build (the Go
# module proxy) run side by side, since one waits on the network and the
# other on the CPU.
set -euo pipefail
cd "$(dirname "$0")/.."

log=${LEDGERFENCE_CACHE:-$HOME/.cache/ledgerfence}/logs
mkdir -p "$log"

apt_packages() {
	export DEBIAN_FRONTEND=noninteractive
	local want=(prometheus shellcheck curl haproxy rabbitmq-server chromium)
	local missing=()
	for p in "${want[@]}"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$' || missing+=("$p")
	done
	if [ ${#missing[@]} -gt 0 ]; then
		apt-get -o DPkg::Lock::Timeout=900 update -qq
		# prometheus' and haproxy's maintainer scripts would start their services: keep them stopped.
		printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
		apt-get -o DPkg::Lock::Timeout=900 install -y -qq --no-install-recommends "${missing[@]}"
		rm -f /usr/sbin/policy-rc.d
	fi
	./tests/integration/nova/install.sh cloud
}

start=$(date +%s)
apt_packages >"$log/apt.log" 2>&1 &
apt_pid=$!
./tools/fabric/build.sh >"$log/fabric-build.log" 2>&1 &
fabric_pid=$!

status=0
if ! wait "$apt_pid"; then
	echo "install-deps: apt failed; last lines of $log/apt.log:" >&2
	tail -n 30 "$log/apt.log" >&2
	status=1
fi
if ! wait "$fabric_pid"; then
	echo "install-deps: Fabric build failed; last lines of $log/fabric-build.log:" >&2
	tail -n 30 "$log/fabric-build.log" >&2
	status=1
fi
echo "install-deps: done in $(($(date +%s) - start)) s (status $status)"
exit "$status"
