#!/bin/bash
# ledgerfence devstack plugin: filterd, a hostagent per compute host, and
# LedgerfenceFilter in nova-scheduler. See ../README.md.
#
# Services (enable in local.conf):
#   ledgerfence-filterd    filterd (and, with LEDGERFENCE_LEDGER=fabric, the
#                          project's local Fabric network) on this node
#   ledgerfence-hostagent  a hostagent for each nova-compute host of this node
# nova.conf of nova-scheduler gets the filter wherever n-sch runs.

# Save the caller's xtrace setting; be verbose inside.
_XTRACE_LEDGERFENCE=$(set +o | grep xtrace)
set -o xtrace

function _ledgerfence_admin_token {
    if [[ -n "$LEDGERFENCE_ADMIN_TOKEN" ]]; then
        echo "$LEDGERFENCE_ADMIN_TOKEN"
    elif [[ -r "$LEDGERFENCE_DATA_DIR/admin-token" ]]; then
        cat "$LEDGERFENCE_DATA_DIR/admin-token"
    fi
}

# The nova-compute hosts of this node, as "name|n" lines (n: the fake
# compute's number, or 0 for the one real compute).
function _ledgerfence_compute_hosts {
    local i
    if [[ "$VIRT_DRIVER" == "fake" ]]; then
        for i in $(seq 1 "${NUMBER_FAKE_NOVA_COMPUTE:-1}"); do
            echo "${HOSTNAME}${i}|$i"
        done
    else
        echo "$(iniget "$NOVA_CPU_CONF" DEFAULT host)|0"
    fi
}

function _ledgerfence_hostagent_services {
    local line
    for line in $(_ledgerfence_compute_hosts); do
        echo "ledgerfence-hostagent-${line#*|}"
    done
}

# A fact of compute N: the _N variable if set, else the node's default.
function _ledgerfence_fact {
    local name=$1 n=$2 var
    var="${name}_${n}"
    if [[ -n "${!var:-}" ]]; then
        echo "${!var}"
    else
        echo "${!name:-}"
    fi
}

# The writer token the hostagent of compute host $1 (fact number $2) sends:
# LEDGERFENCE_HOSTAGENT_TOKEN (or its _N form) when set (multi-node: issued
# on the filterd node with ledgerctl token issue), else, with filterd on
# this node, a token bound to the host, issued once and kept in
# $LEDGERFENCE_DATA_DIR/hostagent-N.token (mode 0600).
function _ledgerfence_hostagent_token {
    local host=$1 n=$2 token file
    token=$(_ledgerfence_fact LEDGERFENCE_HOSTAGENT_TOKEN "$n")
    if [[ -n "$token" ]]; then
        echo "$token"
        return
    fi
    if ! is_service_enabled ledgerfence-filterd; then
        die $LINENO "set LEDGERFENCE_HOSTAGENT_TOKEN (or LEDGERFENCE_HOSTAGENT_TOKEN_$n) for $host: on the filterd node, ledgerctl token issue --data $LEDGERFENCE_DATA_DIR/ledger --role hostagent --host $host"
    fi
    file="$LEDGERFENCE_DATA_DIR/hostagent-$n.token"
    if [[ ! -s "$file" ]]; then
        # A token issued before and lost with its file is replaced.
        "$LEDGERFENCE_BIN_DIR/ledgerctl" token revoke --data "$LEDGERFENCE_DATA_DIR/ledger" "hostagent-$host" >/dev/null 2>&1 || true
        (umask 077 && "$LEDGERFENCE_BIN_DIR/ledgerctl" token issue --data "$LEDGERFENCE_DATA_DIR/ledger" \
            --role hostagent --host "$host" >"$file") || die $LINENO "issuing the writer token of $host failed"
    fi
    cat "$file"
}

# The URL the hostagents of this node reach filterd at: over loopback when
# filterd runs here (a token goes over plain http only to a loopback
# address), else LEDGERFENCE_URL (https:// across machines).
function _ledgerfence_hostagent_url {
    if is_service_enabled ledgerfence-filterd; then
        echo "http://127.0.0.1:$LEDGERFENCE_PORT"
    else
        echo "$LEDGERFENCE_URL"
    fi
}

function install_ledgerfence {
    if is_service_enabled ledgerfence-filterd ledgerfence-hostagent; then
        if ! command -v "$LEDGERFENCE_GO" >/dev/null; then
            die $LINENO "ledgerfence needs Go ($LEDGERFENCE_GO) to build filterd and hostagent"
        fi
        mkdir -p "$LEDGERFENCE_BIN_DIR"
        local cmd
        for cmd in filterd hostagent ledgerctl; do
            (cd "$LEDGERFENCE_DIR" && "$LEDGERFENCE_GO" build -o "$LEDGERFENCE_BIN_DIR/$cmd" "./cmd/$cmd") ||
                die $LINENO "go build ./cmd/$cmd failed"
        done
    fi
    if is_service_enabled n-sch; then
        pip_install "$LEDGERFENCE_PLUGIN_DIR"
    fi
}

function configure_ledgerfence {
    mkdir -p "$LEDGERFENCE_DATA_DIR"
    chmod 0700 "$LEDGERFENCE_DATA_DIR"
    if is_service_enabled ledgerfence-filterd && [[ -z "$(_ledgerfence_admin_token)" ]]; then
        (umask 077 && openssl rand -hex 24 >"$LEDGERFENCE_DATA_DIR/admin-token")
    fi
    if is_service_enabled n-sch; then
        configure_ledgerfence_nova "$NOVA_CONF"
    fi
}

# configure_ledgerfence_nova NOVA_CONF: load the filter in nova-scheduler.
function configure_ledgerfence_nova {
    local conf=$1 available enabled
    # available_filters is multi-valued: keep Nova's own filters, add ours.
    available=$(iniget_multiline "$conf" filter_scheduler available_filters)
    if [[ -z "$available" ]]; then
        iniadd "$conf" filter_scheduler available_filters nova.scheduler.filters.all_filters
    fi
    if ! grep -qxF "$LEDGERFENCE_FILTER" <<<"$available"; then
        iniadd "$conf" filter_scheduler available_filters "$LEDGERFENCE_FILTER"
    fi
    # Last in enabled_filters: the cheap local filters shrink the list first.
    enabled=$(iniget "$conf" filter_scheduler enabled_filters)
    enabled=${enabled:-$NOVA_FILTERS}
    if [[ ",$enabled," != *",LedgerfenceFilter,"* ]]; then
        iniset "$conf" filter_scheduler enabled_filters "${enabled:+$enabled,}LedgerfenceFilter"
    fi
    iniset "$conf" ledgerfence url "$LEDGERFENCE_FILTER_URLS"
    iniset "$conf" ledgerfence timeout "$LEDGERFENCE_TIMEOUT"
    iniset "$conf" ledgerfence connect_timeout "$LEDGERFENCE_CONNECT_TIMEOUT"
    iniset "$conf" ledgerfence fail_open "$LEDGERFENCE_FAIL_OPEN"
    if [[ -n "$LEDGERFENCE_WEBHOOK_TOKEN" ]]; then
        iniset "$conf" ledgerfence token "$LEDGERFENCE_WEBHOOK_TOKEN"
    fi
    local opt var
    for opt in ca_file cert_file key_file; do
        var=LEDGERFENCE_${opt^^}
        if [[ -n "${!var}" ]]; then
            iniset "$conf" ledgerfence "$opt" "${!var}"
        fi
    done
}

# The Fabric network's settings (network.env, KEY=VALUE lines) and, for an
# identity NAME of it, the gateway settings filterd and hostagent read
# (LEDGERFENCE_FABRIC_PEER, ..._TLS_CA, ..._SERVER_NAME, ..._MSP_ID,
# ..._CERT, ..._KEY), through Org1's peer.
function _ledgerfence_fabric_env {
    local name=$1 env="$LEDGERFENCE_FABRIC_DIR/network.env" id
    [[ -r "$env" ]] || die $LINENO "no Fabric network: $env is missing"
    id="$LEDGERFENCE_FABRIC_DIR/identities/$name"
    [[ -r "$id/cert.pem" ]] || die $LINENO "no Fabric identity $name in $id"
    grep -E '^LEDGERFENCE_FABRIC_[A-Z0-9_]+=' "$env"
    # shellcheck disable=SC2016 # expanded when the launcher runs
    echo 'LEDGERFENCE_FABRIC_PEER=$LEDGERFENCE_FABRIC_ORG1_PEER_ADDRESS'
    # shellcheck disable=SC2016
    echo 'LEDGERFENCE_FABRIC_TLS_CA=$LEDGERFENCE_FABRIC_ORG1_PEER_TLS_CA'
    # shellcheck disable=SC2016
    echo 'LEDGERFENCE_FABRIC_SERVER_NAME=$LEDGERFENCE_FABRIC_ORG1_PEER_SERVER_NAME'
    echo "LEDGERFENCE_FABRIC_MSP_ID=$(cat "$id/mspid")"
    echo "LEDGERFENCE_FABRIC_CERT=$id/cert.pem"
    echo "LEDGERFENCE_FABRIC_KEY=$id/key.pem"
}

# _ledgerfence_launcher NAME FABRIC_IDENTITY COMMAND...: a script in the
# data directory that runs COMMAND with the right environment. Tokens stay
# in files readable by the stack user only, not in unit files or ps.
function _ledgerfence_launcher {
    local name=$1 identity=$2 path
    shift 2
    path="$LEDGERFENCE_DATA_DIR/$name.sh"
    {
        echo '#!/bin/bash'
        echo "# written by the ledgerfence devstack plugin"
        echo 'set -e'
        if [[ "$LEDGERFENCE_LEDGER" == "fabric" ]]; then
            echo 'set -a'
            _ledgerfence_fabric_env "$identity"
            echo 'set +a'
        fi
        printf 'exec'
        printf ' %q' "$@"
        echo
    } >"$path"
    chmod 0700 "$path"
    echo "$path"
}

function start_ledgerfence_filterd {
    local args=(--listen "$LEDGERFENCE_LISTEN" --data "$LEDGERFENCE_DATA_DIR/ledger"
        --admin-token "$(_ledgerfence_admin_token)" --log-format console)
    if [[ "$LEDGERFENCE_LEDGER" == "fabric" ]]; then
        local hosts=() line
        for line in $(_ledgerfence_compute_hosts); do
            hosts+=("${line%|*}")
        done
        LEDGERFENCE_FABRIC_DIR=$LEDGERFENCE_FABRIC_DIR "$LEDGERFENCE_FABRIC_NETWORK/up.sh" "${hosts[@]}" ||
            die $LINENO "the Fabric network did not start"
        # Resume the chaincode event stream where it stopped after a restart.
        args+=(--ledger fabric --fabric-checkpoint "$LEDGERFENCE_DATA_DIR/fabric-checkpoint")
    fi
    if [[ "$LEDGERFENCE_DENY_UNREGULATED" == "True" ]]; then
        args+=(--deny-unregulated)
    fi
    if [[ -n "$LEDGERFENCE_WEBHOOK_TOKEN" ]]; then
        args+=(--webhook-token "$LEDGERFENCE_WEBHOOK_TOKEN")
    fi
    # shellcheck disable=SC2206 # extra flags, split on purpose
    args+=($LEDGERFENCE_FILTERD_ARGS)
    run_process ledgerfence-filterd "$(_ledgerfence_launcher filterd \
        "$LEDGERFENCE_FILTERD_FABRIC_IDENTITY" "$LEDGERFENCE_BIN_DIR/filterd" "${args[@]}")"
    if ! wait_for_service 60 "$LEDGERFENCE_URL/readyz"; then
        die $LINENO "filterd did not become ready at $LEDGERFENCE_URL"
    fi
}

function start_ledgerfence_hostagents {
    local line host n country orgs region args
    for line in $(_ledgerfence_compute_hosts); do
        host=${line%|*}
        n=${line#*|}
        country=$(_ledgerfence_fact LEDGERFENCE_HOST_COUNTRY "$n")
        orgs=$(_ledgerfence_fact LEDGERFENCE_HOST_ORGANIZATIONS "$n")
        region=$(_ledgerfence_fact LEDGERFENCE_HOST_REGION "$n")
        if [[ -z "$country" || -z "$orgs" ]]; then
            die $LINENO "set LEDGERFENCE_HOST_COUNTRY and LEDGERFENCE_HOST_ORGANIZATIONS (or their _$n forms) for $host"
        fi
        args=(--host "$host" --country "$country" --organization "$orgs" --log-format console)
        if [[ -n "$region" ]]; then
            args+=(--region "$region")
        fi
        if [[ "$LEDGERFENCE_LEDGER" == "fabric" ]]; then
            # It signs with its own identity, "<host>agent" (up.sh made it).
            args+=(--ledger fabric)
        else
            args+=(--ledger "$(_ledgerfence_hostagent_url)" --token "$(_ledgerfence_hostagent_token "$host" "$n")")
        fi
        if [[ "$LEDGERFENCE_HOSTAGENT_SWEEP" == "True" ]]; then
            args=(env OS_CLOUD="$LEDGERFENCE_HOSTAGENT_CLOUD" "$LEDGERFENCE_BIN_DIR/hostagent" "${args[@]}")
        else
            args=("$LEDGERFENCE_BIN_DIR/hostagent" "${args[@]}" --no-sweep)
        fi
        # shellcheck disable=SC2206 # extra flags, split on purpose
        args+=($LEDGERFENCE_HOSTAGENT_ARGS)
        # One devstack service per compute host of this node.
        enable_service "ledgerfence-hostagent-$n"
        run_process "ledgerfence-hostagent-$n" "$(_ledgerfence_launcher \
            "hostagent-$n" "${host}agent" "${args[@]}")"
    done
}

function start_ledgerfence {
    if is_service_enabled ledgerfence-filterd; then
        start_ledgerfence_filterd
    fi
    if is_service_enabled ledgerfence-hostagent; then
        start_ledgerfence_hostagents
    fi
}

function stop_ledgerfence {
    local svc
    if is_service_enabled ledgerfence-hostagent; then
        for svc in $(_ledgerfence_hostagent_services); do
            enable_service "$svc"
            stop_process "$svc"
        done
    fi
    if is_service_enabled ledgerfence-filterd; then
        stop_process ledgerfence-filterd
        if [[ "$LEDGERFENCE_LEDGER" == "fabric" && -e "$LEDGERFENCE_FABRIC_DIR" ]]; then
            LEDGERFENCE_FABRIC_DIR=$LEDGERFENCE_FABRIC_DIR "$LEDGERFENCE_FABRIC_NETWORK/down.sh" --keep || true
        fi
    fi
}

function cleanup_ledgerfence {
    if [[ -e "$LEDGERFENCE_FABRIC_DIR" ]]; then
        LEDGERFENCE_FABRIC_DIR=$LEDGERFENCE_FABRIC_DIR "$LEDGERFENCE_FABRIC_NETWORK/down.sh" || true
    fi
    rm -rf "$LEDGERFENCE_DATA_DIR" "$LEDGERFENCE_BIN_DIR"
}

if [[ "$1" == "stack" ]]; then
    case "$2" in
        install)
            echo_summary "Installing ledgerfence"
            install_ledgerfence
            ;;
        post-config)
            echo_summary "Configuring ledgerfence"
            configure_ledgerfence
            ;;
        extra)
            echo_summary "Starting ledgerfence"
            start_ledgerfence
            ;;
    esac
fi
if [[ "$1" == "unstack" ]]; then
    stop_ledgerfence
fi
if [[ "$1" == "clean" ]]; then
    cleanup_ledgerfence
fi

$_XTRACE_LEDGERFENCE
