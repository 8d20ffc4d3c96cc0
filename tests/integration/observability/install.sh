#!/bin/sh
# Installs what tests/integration/observability needs: Prometheus and promtool
# (Debian's prometheus package). Idempotent; run as root.
set -eu
if command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1; then
	exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get -o DPkg::Lock::Timeout=900 update
apt-get -o DPkg::Lock::Timeout=900 install -y --no-install-recommends prometheus
command -v prometheus >/dev/null && command -v promtool >/dev/null
