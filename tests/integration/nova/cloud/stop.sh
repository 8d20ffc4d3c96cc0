#!/bin/bash
# Stop every process start.sh started in RIG_DIR, with all its children
# (each runs in its own session: the whole process group is signalled).
#
#   stop.sh RIG_DIR [--purge]     --purge also removes RIG_DIR
set -uo pipefail

RIG=${1:?usage: stop.sh RIG_DIR [--purge]}
[ -d "$RIG/pids" ] || exit 0
RIG=$(cd "$RIG" && pwd)

ORDER="hostagent1 hostagent2 hostagent3 recorder1 recorder2 nova-compute1 nova-compute2 nova-compute3 nova-scheduler nova-conductor
nova-api nova-api-guarded glance placement keystone neutron filterd rabbitmq epmd mariadb"

alive() { kill -0 -- "-$1" 2>/dev/null; }

# ours PGID: the process group was started by start.sh for this rig (a stale
# pid file must never hit another process).
ours() {
	local p
	for p in $(pgrep -g "$1"); do
		if tr '\0' '\n' <"/proc/$p/environ" 2>/dev/null | grep -qxF "LEDGERFENCE_NOVA_RIG=$RIG"; then
			return 0
		fi
	done
	return 1
}

stop_group() {
	local pid=$1
	alive "$pid" || return 0
	ours "$pid" || return 0
	kill -TERM -- "-$pid" 2>/dev/null
	for _ in $(seq 1 40); do
		alive "$pid" || return 0
		sleep 0.25
	done
	kill -KILL -- "-$pid" 2>/dev/null
}

stop_file() {
	local f=$1
	[ -f "$f" ] || return 0
	stop_group "$(cat "$f")"
	rm -f "$f"
}

for name in $ORDER; do
	stop_file "$RIG/pids/$name.pid"
done
# Anything else recorded (hostagents, restarted computes).
for f in "$RIG"/pids/*.pid; do
	stop_file "$f"
done

if [ "${2:-}" = --purge ]; then
	rm -rf "$RIG"
fi
