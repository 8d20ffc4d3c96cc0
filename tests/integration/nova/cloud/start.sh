#!/bin/bash
# Start a mini OpenStack cloud for ledgerfence's end-to-end tests: MariaDB,
# RabbitMQ, Keystone, Placement, Glance, nova-api, nova-conductor,
# nova-scheduler (with LedgerfenceFilter), three fake-driver computes
# (fake-compute-1..3), a fake Neutron and a real filterd; a second
# nova-api with ledgerfence's ForcedMoveGuard (api-paste filter); and two
# replicas of ledgerfence's recorder, which read Nova's versioned
# notifications from the cloud's RabbitMQ and record each move as a
# placement (witness nova) through filterd, with writer tokens of role
# recorder. Host agents' tokens (role hostagent, one per compute) are issued
# too; the tests run the agents when they need the second witness
# (cloudctl.start_hostagent), since an agent re-asserts its host's record.
#
#   start.sh RIG_DIR
#
# Everything, databases included, lives under RIG_DIR; cloud.env there says
# where each service listens. Each process runs in its own session, its pid
# in RIG_DIR/pids, so stop.sh can end it and all its children. Needs the
# packages of ../install.sh cloud. On failure, what was started is stopped.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
NOVA_TESTS=$(dirname "$HERE")
REPO=$(cd "$NOVA_TESTS/../../.." && pwd)
RIG=${1:?usage: start.sh RIG_DIR}
mkdir -p "$RIG"
RIG=$(cd "$RIG" && pwd)
export PATH=/usr/local/go/bin:/usr/sbin:/usr/bin:/sbin:/bin
PY=/usr/bin/python3
T0=$(date +%s)

say() { echo "[$(date +%T) +$(($(date +%s) - T0))s] $*"; }

fail() {
	say "FAILED: $*" >&2
	"$HERE/stop.sh" "$RIG" >&2 || true
	exit 1
}
trap 'fail "line $LINENO: $BASH_COMMAND"' ERR

# wait_for SECONDS WHAT COMMAND...: poll until COMMAND succeeds.
wait_for() {
	local limit=$1 what=$2
	shift 2
	local end=$(($(date +%s) + limit))
	until "$@" >/dev/null 2>&1; do
		if [ "$(date +%s)" -ge "$end" ]; then
			fail "$what not ready within ${limit}s (see $RIG/logs)"
		fi
		sleep 0.5
	done
}

# spawn NAME COMMAND...: run in a new session, output to logs/NAME.out.
spawn() {
	local name=$1
	shift
	LEDGERFENCE_NOVA_RIG=$RIG setsid "$@" >"$RIG/logs/$name.out" 2>&1 </dev/null &
	echo $! >"$RIG/pids/$name.pid"
}

# quiet COMMAND...: run a management command, its output to logs/manage.log.
quiet() {
	echo "+ $*" >>"$RIG/logs/manage.log"
	"$@" >>"$RIG/logs/manage.log" 2>&1 || fail "$* (see $RIG/logs/manage.log)"
}

free_port() {
	$PY -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

mkdir -p "$RIG"/{logs,pids,etc/keystone,etc/placement,etc/glance,etc/nova} \
	"$RIG"/keystone/{fernet-keys,credential-keys} "$RIG"/state/{lock,glance} \
	"$RIG"/mysql "$RIG"/rabbitmq "$RIG"/filterd "$RIG"/bin
for i in 1 2 3; do mkdir -p "$RIG/state/compute$i/instances"; done

# --- ports and passwords (fresh each run, never committed)
secret() { $PY -c 'import secrets; print(secrets.token_hex(12))'; }
cat >"$RIG/cloud.env" <<ENV
RIG=$RIG
MYSQL_PORT=$(free_port)
RABBIT_PORT=$(free_port)
RABBIT_DIST_PORT=$(free_port)
EPMD_PORT=$(free_port)
KEYSTONE_PORT=$(free_port)
PLACEMENT_PORT=$(free_port)
GLANCE_PORT=$(free_port)
NOVA_API_PORT=$(free_port)
NOVA_API_GUARDED_PORT=$(free_port)
NEUTRON_PORT=$(free_port)
FILTERD_PORT=$(free_port)
RECORDER_METRICS_1=$(free_port)
RECORDER_METRICS_2=$(free_port)
DB_PASSWORD=$(secret)
SERVICE_PASSWORD=$(secret)
ADMIN_PASSWORD=$(secret)
FILTERD_TOKEN=$(secret)
ENV
# shellcheck source=/dev/null
. "$RIG/cloud.env"

render() {
	sed -e "s|@RIG@|$RIG|g" -e "s|@DBPASS@|$DB_PASSWORD|g" \
		-e "s|@SVCPASS@|$SERVICE_PASSWORD|g" -e "s|@MYSQL_PORT@|$MYSQL_PORT|g" \
		-e "s|@RABBIT_PORT@|$RABBIT_PORT|g" -e "s|@KEYSTONE_PORT@|$KEYSTONE_PORT|g" \
		-e "s|@PLACEMENT_PORT@|$PLACEMENT_PORT|g" -e "s|@GLANCE_PORT@|$GLANCE_PORT|g" \
		-e "s|@NOVA_API_PORT@|$NOVA_API_PORT|g" -e "s|@NEUTRON_PORT@|$NEUTRON_PORT|g" \
		-e "s|@NOVA_API_GUARDED_PORT@|$NOVA_API_GUARDED_PORT|g" \
		-e "s|@FILTERD_PORT@|$FILTERD_PORT|g" -e "s|@N@|${2:-}|g" "$HERE/etc/$1"
}
render keystone.conf >"$RIG/etc/keystone/keystone.conf"
render keystone-uwsgi.ini >"$RIG/etc/keystone/uwsgi.ini"
render placement.conf >"$RIG/etc/placement/placement.conf"
render placement-uwsgi.ini >"$RIG/etc/placement/uwsgi.ini"
render glance-api.conf >"$RIG/etc/glance/glance-api.conf"
render nova.conf >"$RIG/etc/nova/nova.conf"
render nova-api-uwsgi.ini >"$RIG/etc/nova/uwsgi-api.ini"
for i in 1 2 3; do render compute.conf "$i" >"$RIG/etc/nova/compute$i.conf"; done
render nova-api-guarded-uwsgi.ini >"$RIG/etc/nova/uwsgi-api-guarded.ini"
cp /etc/nova/api-paste.ini "$RIG/etc/nova/api-paste.ini"
# The guarded nova-api: ForcedMoveGuard right after keystonecontext.
{
	sed 's/ keystonecontext / keystonecontext ledgerfence_guard /' /etc/nova/api-paste.ini
	printf '\n[filter:ledgerfence_guard]\n'
	printf 'paste.filter_factory = ledgerfence_nova.api_guard:ForcedMoveGuard.factory\n'
} >"$RIG/etc/nova/api-paste-guarded.ini"
cat >"$RIG/admin-openrc" <<RC
export OS_AUTH_URL=http://127.0.0.1:$KEYSTONE_PORT/v3
export OS_USERNAME=admin OS_PASSWORD=$ADMIN_PASSWORD OS_PROJECT_NAME=admin
export OS_USER_DOMAIN_NAME=Default OS_PROJECT_DOMAIN_NAME=Default
export OS_IDENTITY_API_VERSION=3 OS_REGION_NAME=RegionOne
RC

# --- the filter, installed as a package for the scheduler
cp -r "$REPO/devstack-plugin" "$RIG/devstack-plugin"
quiet $PY -m pip install --quiet --root-user-action=ignore --no-build-isolation --no-deps --no-index \
	--target "$RIG/site" "$RIG/devstack-plugin"

# --- filterd (built unless LEDGERFENCE_FILTERD names a binary)
FILTERD=${LEDGERFENCE_FILTERD:-$RIG/bin/filterd}
if [ -z "${LEDGERFENCE_FILTERD:-}" ]; then
	(cd "$REPO" && go build -o "$RIG/bin/filterd" ./cmd/filterd) \
		>>"$RIG/logs/manage.log" 2>&1 || fail "go build ./cmd/filterd"
fi
if [ -z "${LEDGERFENCE_HOSTAGENT:-}" ] && [ -d "$REPO/cmd/hostagent" ]; then
	(cd "$REPO" && go build -o "$RIG/bin/hostagent" ./cmd/hostagent) \
		>>"$RIG/logs/manage.log" 2>&1 || say "hostagent does not build; hosts are registered through filterd's REST API"
fi
# ledgerctl (tokens, residency reports) and the recorder, built unless
# LEDGERFENCE_LEDGERCTL / LEDGERFENCE_RECORDER name binaries.
for cmd in ledgerctl recorder; do
	var=LEDGERFENCE_${cmd^^}
	if [ -z "${!var:-}" ]; then
		(cd "$REPO" && go build -o "$RIG/bin/$cmd" "./cmd/$cmd") \
			>>"$RIG/logs/manage.log" 2>&1 || fail "go build ./cmd/$cmd"
	fi
done
LEDGERCTL=${LEDGERFENCE_LEDGERCTL:-$RIG/bin/ledgerctl}
HOSTAGENT=${LEDGERFENCE_HOSTAGENT:-$RIG/bin/hostagent}
{
	echo "FILTERD_BIN=$FILTERD"
	echo "LEDGERCTL_BIN=$LEDGERCTL"
	echo "RECORDER_BIN=${LEDGERFENCE_RECORDER:-$RIG/bin/recorder}"
	echo "HOSTAGENT_BIN=$HOSTAGENT"
} >>"$RIG/cloud.env"

# Writer tokens of filterd's embedded ledger, issued into its data
# directory as an operator does: one per recorder replica (role recorder:
# placements of witness nova, nothing else) and one per compute's host
# agent (role hostagent, bound to its host).
issue() { # issue ROLE ID [HOST]: prints the new token
	"$LEDGERCTL" token issue --data "$RIG/filterd" --role "$1" --id "$2" ${3:+--host "$3"} -o json \
		2>>"$RIG/logs/manage.log" | $PY -c 'import json, sys; print(json.load(sys.stdin)["token"])'
}
for n in 1 2; do
	tok=$(issue recorder "recorder-$n")
	echo "RECORDER_TOKEN_$n=$tok" >>"$RIG/cloud.env"
done
for i in 1 2 3; do
	tok=$(issue hostagent "hostagent-fake-compute-$i" "fake-compute-$i")
	echo "HOSTAGENT_TOKEN_$i=$tok" >>"$RIG/cloud.env"
done
spawn filterd "$FILTERD" --listen "127.0.0.1:$FILTERD_PORT" --data "$RIG/filterd" \
	--admin-token "$FILTERD_TOKEN"

# --- MariaDB, with its own data directory
quiet mariadb-install-db --no-defaults --user=root --datadir="$RIG/mysql/data" \
	--auth-root-authentication-method=socket --skip-test-db
spawn mariadb /usr/sbin/mariadbd --no-defaults --user=root \
	--datadir="$RIG/mysql/data" --socket="$RIG/mysql/mysqld.sock" \
	--pid-file="$RIG/mysql/mysqld.pid" --port="$MYSQL_PORT" \
	--bind-address=127.0.0.1 --skip-name-resolve --skip-log-bin \
	--innodb-buffer-pool-size=128M --innodb-flush-log-at-trx-commit=0 \
	--max-connections=500
SQL=(mariadb --no-defaults --socket="$RIG/mysql/mysqld.sock" -uroot)
wait_for 60 mariadb "${SQL[@]}" -e 'SELECT 1'
"${SQL[@]}" <<SQLEOF
CREATE DATABASE keystone; CREATE DATABASE placement; CREATE DATABASE glance;
CREATE DATABASE nova_api; CREATE DATABASE nova; CREATE DATABASE nova_cell0;
CREATE USER 'os'@'127.0.0.1' IDENTIFIED BY '$DB_PASSWORD';
GRANT ALL PRIVILEGES ON *.* TO 'os'@'127.0.0.1';
FLUSH PRIVILEGES;
SQLEOF
say mariadb up

# --- RabbitMQ (and its own epmd), state under the rig
RABBIT_ENV=(env HOME="$RIG/rabbitmq" ERL_EPMD_PORT="$EPMD_PORT"
	RABBITMQ_NODENAME=lfnova@localhost RABBITMQ_NODE_IP_ADDRESS=127.0.0.1
	RABBITMQ_NODE_PORT="$RABBIT_PORT" RABBITMQ_DIST_PORT="$RABBIT_DIST_PORT"
	RABBITMQ_MNESIA_BASE="$RIG/rabbitmq/mnesia" RABBITMQ_LOG_BASE="$RIG/logs"
	RABBITMQ_ENABLED_PLUGINS_FILE="$RIG/rabbitmq/enabled_plugins"
	RABBITMQ_CONFIG_FILE="$RIG/rabbitmq/rabbitmq"
	RABBITMQ_ADVANCED_CONFIG_FILE="$RIG/rabbitmq/advanced.config"
	RABBITMQ_CONF_ENV_FILE="$RIG/rabbitmq/rabbitmq-env.conf")
echo '[].' >"$RIG/rabbitmq/enabled_plugins"
: >"$RIG/rabbitmq/rabbitmq-env.conf"
: >"$RIG/rabbitmq/rabbitmq.conf"
# The node's server and rabbitmqctl with their environment, for the tests
# that restart the broker (cloudctl.restart_rabbitmq).
{
	echo '#!/bin/bash'
	printf 'exec'
	printf ' %q' "${RABBIT_ENV[@]}" /usr/lib/rabbitmq/bin/rabbitmq-server
	echo
} >"$RIG/bin/rabbitmq-server"
{
	echo '#!/bin/bash'
	printf 'exec'
	printf ' %q' "${RABBIT_ENV[@]}" /usr/lib/rabbitmq/bin/rabbitmqctl -n lfnova@localhost
	echo ' "$@"'
} >"$RIG/bin/rabbitmqctl"
chmod 0755 "$RIG/bin/rabbitmq-server" "$RIG/bin/rabbitmqctl"
spawn epmd env ERL_EPMD_PORT="$EPMD_PORT" epmd -address 127.0.0.1
spawn rabbitmq "$RIG/bin/rabbitmq-server"

# --- database schemas, in parallel while RabbitMQ starts
K=(--config-dir "$RIG/etc/keystone")
NM=(nova-manage --config-file "$RIG/etc/nova/nova.conf")
JOBS=()
quiet_bg() {
	(quiet "$@") &
	JOBS+=($!)
}
quiet_bg keystone-manage "${K[@]}" db_sync
quiet_bg placement-manage --config-dir "$RIG/etc/placement" db sync
quiet_bg glance-manage --config-file "$RIG/etc/glance/glance-api.conf" db_sync
quiet_bg "${NM[@]}" api_db sync
for job in "${JOBS[@]}"; do wait "$job" || fail "database schemas"; done
say "schemas of keystone, placement, glance and nova_api made"
(
	quiet "${NM[@]}" cell_v2 map_cell0
	quiet "${NM[@]}" cell_v2 create_cell --name=cell1
	quiet "${NM[@]}" db sync
) &
NOVA_DB=$!

# --- Keystone
quiet keystone-manage "${K[@]}" fernet_setup --keystone-user root --keystone-group root
quiet keystone-manage "${K[@]}" credential_setup --keystone-user root --keystone-group root
quiet keystone-manage "${K[@]}" bootstrap --bootstrap-password "$ADMIN_PASSWORD" \
	--bootstrap-admin-url "http://127.0.0.1:$KEYSTONE_PORT/v3/" \
	--bootstrap-internal-url "http://127.0.0.1:$KEYSTONE_PORT/v3/" \
	--bootstrap-public-url "http://127.0.0.1:$KEYSTONE_PORT/v3/" \
	--bootstrap-region-id RegionOne
spawn keystone uwsgi --ini "$RIG/etc/keystone/uwsgi.ini"
wait_for 60 keystone curl -sf "http://127.0.0.1:$KEYSTONE_PORT/v3"
quiet $PY "$HERE/bootstrap.py" "$RIG" keystone
say keystone up

spawn placement uwsgi --ini "$RIG/etc/placement/uwsgi.ini"
spawn glance glance-api --config-file "$RIG/etc/glance/glance-api.conf"
spawn neutron $PY "$HERE/fake_neutron.py" "$NEUTRON_PORT"

RQ() { "$RIG/bin/rabbitmqctl" "$@"; }
wait_for 90 rabbitmq RQ await_startup
quiet RQ add_user openstack "$SERVICE_PASSWORD"
quiet RQ set_permissions openstack '.*' '.*' '.*'
say rabbitmq up

# --- the recorders, before Nova sends anything: a notification sent before
# their queue is bound reaches only oslo's own queue.
wait_for 60 filterd curl -sf "http://127.0.0.1:$FILTERD_PORT/readyz"
for n in 1 2; do quiet $PY "$HERE/cloudctl.py" "$RIG" start-recorder "$n"; done
quiet $PY "$HERE/cloudctl.py" "$RIG" wait-recorders 60
say "two recorders consuming Nova's notifications"

wait "$NOVA_DB" || fail "nova cell databases"
say "nova cell databases made"

# --- Nova
C=(--config-file "$RIG/etc/nova/nova.conf")
spawn nova-api uwsgi --ini "$RIG/etc/nova/uwsgi-api.ini"
spawn nova-api-guarded uwsgi --ini "$RIG/etc/nova/uwsgi-api-guarded.ini"
spawn nova-conductor nova-conductor "${C[@]}" --log-file "$RIG/logs/nova-conductor.log"
spawn nova-scheduler env PYTHONPATH="$RIG/site" nova-scheduler "${C[@]}" \
	--log-file "$RIG/logs/nova-scheduler.log"
for i in 1 2 3; do
	spawn "nova-compute$i" $PY -c 'import sys; from nova.cmd.compute import main; sys.exit(main())' \
		"${C[@]}" --config-file "$RIG/etc/nova/compute$i.conf" \
		--log-file "$RIG/logs/nova-compute$i.log"
done
wait_for 60 filterd curl -sf "http://127.0.0.1:$FILTERD_PORT/readyz"
wait_for 60 placement curl -sf "http://127.0.0.1:$PLACEMENT_PORT/"
wait_for 90 glance curl -sf "http://127.0.0.1:$GLANCE_PORT/"
wait_for 90 nova-api curl -sf "http://127.0.0.1:$NOVA_API_PORT/"
wait_for 90 "guarded nova-api" curl -sf "http://127.0.0.1:$NOVA_API_GUARDED_PORT/"
quiet $PY "$HERE/bootstrap.py" "$RIG" compute
say nova-api up, flavors and images created

computes_up() {
	$PY "$HERE/cloudctl.py" "$RIG" computes-up 3
}
wait_for 180 "three nova-computes" computes_up
quiet "${NM[@]}" cell_v2 discover_hosts
wait_for 60 "three hypervisors" $PY "$HERE/cloudctl.py" "$RIG" hypervisors 3
trap - ERR
say READY in $(($(date +%s) - T0))s
echo "BRINGUP_SECONDS=$(($(date +%s) - T0))" >>"$RIG/cloud.env"
