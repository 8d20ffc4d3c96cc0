# shellcheck shell=bash
# shellcheck disable=SC2034 # the settings and paths below are read by the scripts that source this
# lib.sh: shared settings and functions of the native Fabric test network.
# Sourced by up.sh, down.sh, deploy.sh, enroll.sh, ctl.sh and smoke.sh; not run on its own.
#
# Settings (environment):
#   LEDGERFENCE_FABRIC_DIR        state folder (default /tmp/ledgerfence-fabric); everything lives there
#   LEDGERFENCE_FABRIC_PORT_BASE  first port of the 17050..17121 range (default 17050); see README.md
#   LEDGERFENCE_FABRIC_ORGS       peer organisations, 2 (default) or 3 (read by up.sh only)
#   LEDGERFENCE_FABRIC_BIN        folder with the Fabric commands (default: tools/fabric/build.sh builds them)
#   LEDGERFENCE_FABRIC_LOG_SPEC   FABRIC_LOGGING_SPEC of orderer and peers (default info)
#   LEDGERFENCE_FABRIC_CC_TLS     1 (default): peers reach the chaincode server over mutual TLS; 0: plain
# Orderer batching (read by up.sh only):
#   LEDGERFENCE_FABRIC_BATCH_TIMEOUT (250ms) LEDGERFENCE_FABRIC_MAX_MESSAGES (1) LEDGERFENCE_FABRIC_RAFT_TICK (100ms)
# The settings up.sh used are saved in $DIR/settings.env and win over the environment afterwards,
# so ctl.sh and deploy.sh restart things exactly as up.sh started them.

LF_SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
LF_REPO=$(cd "$LF_SRC/../../../.." && pwd)
LF_DIR=${LEDGERFENCE_FABRIC_DIR:-/tmp/ledgerfence-fabric}
LF_MARK=.ledgerfence-fabric

LF_CHANNEL=ledger
LF_CC_NAME=ledgerfence
LF_CC_LABEL=ledgerfence_1
LF_DOMAIN=ledgerfence.example

lf_log() { echo "[$(date +%H:%M:%S.%3N)] $*" >&2; }
lf_die() { echo "error: $*" >&2; exit 1; }

# lf_now: seconds since the epoch with milliseconds, for timings.
lf_now() { date +%s.%3N; }
lf_since() { awk -v a="$1" -v b="$(lf_now)" 'BEGIN { printf "%.2f", b - a }'; }

lf_check_dir() {
  [[ $LF_DIR == /* ]] || lf_die "LEDGERFENCE_FABRIC_DIR must be an absolute path: $LF_DIR"
  [[ $LF_DIR =~ ^[A-Za-z0-9/._-]+$ ]] || lf_die "LEDGERFENCE_FABRIC_DIR may hold only [A-Za-z0-9/._-]: $LF_DIR"
  case $LF_DIR in
    / | /tmp | /tmp/ | "$HOME" | "$HOME"/ | /root | /home | /usr | /var | /etc)
      lf_die "refusing to use $LF_DIR as the state folder" ;;
  esac
  case $LF_DIR/ in
    "$LF_REPO"/*) lf_die "the state folder must not be inside the repository: $LF_DIR" ;;
  esac
}
lf_check_dir

# lf_settings: ports and options, from $DIR/settings.env when up.sh wrote one.
lf_settings() {
  if [[ -f $LF_DIR/settings.env ]]; then
    # shellcheck source=/dev/null
    . "$LF_DIR/settings.env"
  else
    LF_PORT_BASE=${LEDGERFENCE_FABRIC_PORT_BASE:-17050}
    LF_BATCH_TIMEOUT=${LEDGERFENCE_FABRIC_BATCH_TIMEOUT:-250ms}
    LF_MAX_MESSAGES=${LEDGERFENCE_FABRIC_MAX_MESSAGES:-1}
    LF_RAFT_TICK=${LEDGERFENCE_FABRIC_RAFT_TICK:-100ms}
    LF_LOG_SPEC=${LEDGERFENCE_FABRIC_LOG_SPEC:-info}
    LF_BIN=${LEDGERFENCE_FABRIC_BIN:-}
    LF_CC_TLS=${LEDGERFENCE_FABRIC_CC_TLS:-1}
    LF_ORGS=${LEDGERFENCE_FABRIC_ORGS:-2}
  fi
  # (a settings.env of an older harness names no organisations: it had two)
  LF_ORGS=${LF_ORGS:-2}
  [[ $LF_ORGS == 2 || $LF_ORGS == 3 ]] || lf_die "LEDGERFENCE_FABRIC_ORGS must be 2 or 3: $LF_ORGS"
  mapfile -t LF_ORG_NUMS < <(seq 1 "$LF_ORGS")
  if ! [[ $LF_PORT_BASE =~ ^[0-9]+$ ]] || ((LF_PORT_BASE < 1024 || LF_PORT_BASE > 65000)); then
    lf_die "LEDGERFENCE_FABRIC_PORT_BASE must be a number in 1024..65000: $LF_PORT_BASE"
  fi
  local b=$LF_PORT_BASE
  LF_ORDERER_PORT=$((b + 0))
  LF_ORDERER_ADMIN_PORT=$((b + 1))
  LF_ORDERER_OPS_PORT=$((b + 2))
  LF_PEER1_PORT=$((b + 10))
  LF_PEER1_CC_PORT=$((b + 11))
  LF_PEER1_OPS_PORT=$((b + 12))
  LF_PEER2_PORT=$((b + 20))
  LF_PEER2_CC_PORT=$((b + 21))
  LF_PEER2_OPS_PORT=$((b + 22))
  LF_CA1_PORT=$((b + 30))
  LF_CA1_OPS_PORT=$((b + 31))
  LF_CA2_PORT=$((b + 40))
  LF_CA2_OPS_PORT=$((b + 41))
  LF_CC_PORT=$((b + 50))
  LF_PEER3_PORT=$((b + 60))
  LF_PEER3_CC_PORT=$((b + 61))
  LF_PEER3_OPS_PORT=$((b + 62))
  LF_CA3_PORT=$((b + 70))
  LF_CA3_OPS_PORT=$((b + 71))
  LF_ALL_PORTS=("$LF_ORDERER_PORT" "$LF_ORDERER_ADMIN_PORT" "$LF_ORDERER_OPS_PORT" "$LF_CC_PORT")
  local n v
  for n in "${LF_ORG_NUMS[@]}"; do
    for v in LF_PEER${n}_PORT LF_PEER${n}_CC_PORT LF_PEER${n}_OPS_PORT LF_CA${n}_PORT LF_CA${n}_OPS_PORT; do
      LF_ALL_PORTS+=("${!v}")
    done
  done
  # every component this harness may run, in the order to stop them
  LF_COMPONENTS=(cc)
  for n in "${LF_ORG_NUMS[@]}"; do LF_COMPONENTS+=("peer$n"); done
  LF_COMPONENTS+=(orderer)
  for n in "${LF_ORG_NUMS[@]}"; do LF_COMPONENTS+=("ca$n"); done
}

lf_save_settings() {
  cat >"$LF_DIR/settings.env" <<EOF
LF_PORT_BASE=$LF_PORT_BASE
LF_BATCH_TIMEOUT=$LF_BATCH_TIMEOUT
LF_MAX_MESSAGES=$LF_MAX_MESSAGES
LF_RAFT_TICK=$LF_RAFT_TICK
LF_LOG_SPEC=$LF_LOG_SPEC
LF_BIN=$LF_BIN
LF_CC_TLS=$LF_CC_TLS
LF_ORGS=$LF_ORGS
EOF
}

# lf_bin: find or build the Fabric commands and put them first on PATH.
lf_bin() {
  if [[ -z ${LF_BIN:-} ]]; then
    LF_BIN=$("$LF_REPO/tools/fabric/build.sh")
  fi
  local c
  for c in peer orderer configtxgen cryptogen osnadmin fabric-ca-server fabric-ca-client; do
    [[ -x $LF_BIN/$c ]] || lf_die "$c not found in $LF_BIN (run tools/fabric/build.sh)"
  done
  PATH=$LF_BIN:$PATH
  export PATH
  export FABRIC_CFG_PATH=$LF_DIR/config
}

# Paths inside the state folder.
lf_paths() {
  LF_CRYPTO=$LF_DIR/crypto
  LF_ORDERER_ORG=$LF_CRYPTO/ordererOrganizations/$LF_DOMAIN
  LF_ORDERER_NODE=$LF_ORDERER_ORG/orderers/orderer.$LF_DOMAIN
  LF_ORDERER_TLS_CA=$LF_ORDERER_ORG/tlsca/tlsca.$LF_DOMAIN-cert.pem
  LF_ORDERER_ADMIN_TLS=$LF_ORDERER_ORG/users/Admin@$LF_DOMAIN/tls
  LF_BLOCK=$LF_DIR/configtx/$LF_CHANNEL.block
}

lf_org_domain() { echo "org$1.$LF_DOMAIN"; }
lf_org_dir() { echo "$LF_CRYPTO/peerOrganizations/org$1.$LF_DOMAIN"; }
lf_peer_host() { echo "peer0.org$1.$LF_DOMAIN"; }
lf_peer_dir() { echo "$(lf_org_dir "$1")/peers/$(lf_peer_host "$1")"; }
lf_peer_tls_ca() { echo "$(lf_org_dir "$1")/tlsca/tlsca.org$1.$LF_DOMAIN-cert.pem"; }
lf_peer_port() { local v="LF_PEER$1_PORT"; echo "${!v}"; }
lf_ca_port() { local v="LF_CA$1_PORT"; echo "${!v}"; }
lf_ca_url() { echo "https://127.0.0.1:$(lf_ca_port "$1")"; }
lf_ca_name() { echo "ca-org$1"; }
lf_ca_host() { echo "ca.org$1.$LF_DOMAIN"; }

# lf_org_num ORG: 1, 2 (or 3) from "1", "org1", "Org1", "Org1MSP", of an organisation of the network.
lf_org_num() {
  local n
  for n in "${LF_ORG_NUMS[@]}"; do
    case ${1,,} in
      "$n" | "org$n" | "org${n}msp") echo "$n"; return 0 ;;
    esac
  done
  lf_die "unknown organisation: $1 (org1 to org$LF_ORGS)"
}

# lf_cc_policy: the chaincode definition's own endorsement policy, stated when it is approved and
# committed: the peers of more than one organisation, whatever the channel's default. With two
# organisations both; with three any two, so that one organisation can neither write alone nor,
# by staying away, stop the others.
lf_cc_policy() {
  case $LF_ORGS in
    2) echo "AND('Org1MSP.peer','Org2MSP.peer')" ;;
    3) echo "OutOf(2,'Org1MSP.peer','Org2MSP.peer','Org3MSP.peer')" ;;
  esac
}

# lf_admin N: peer CLI environment of organisation N's admin, talking to its peer.
lf_admin() {
  local n=$1
  export CORE_PEER_TLS_ENABLED=true
  export CORE_PEER_TLS_ROOTCERT_FILE
  CORE_PEER_TLS_ROOTCERT_FILE=$(lf_peer_tls_ca "$n")
  export CORE_PEER_ADDRESS
  CORE_PEER_ADDRESS=127.0.0.1:$(lf_peer_port "$n")
  export CORE_PEER_LOCALMSPID=Org${n}MSP
  export CORE_PEER_MSPCONFIGPATH
  CORE_PEER_MSPCONFIGPATH=$(lf_org_dir "$n")/users/Admin@$(lf_org_domain "$n")/msp
  export FABRIC_LOGGING_SPEC=warning
}

# lf_orderer_args: flags that the peer CLI needs to reach the orderer.
lf_orderer_args() {
  LF_ORDERER_ARGS=(-o "127.0.0.1:$LF_ORDERER_PORT" --ordererTLSHostnameOverride "orderer.$LF_DOMAIN"
    --tls --cafile "$LF_ORDERER_TLS_CA")
}

# lf_all_peers_args: --peerAddresses/--tlsRootCertFiles for every organisation's peer.
lf_all_peers_args() {
  LF_PEERS_ARGS=()
  local n
  for n in "${LF_ORG_NUMS[@]}"; do
    LF_PEERS_ARGS+=(--peerAddresses "127.0.0.1:$(lf_peer_port "$n")" --tlsRootCertFiles "$(lf_peer_tls_ca "$n")")
  done
}

# ---- processes ----------------------------------------------------------------------------------
# Every process is started by lf_spawn in its own session (so its process group can be signalled),
# with LEDGERFENCE_FABRIC_OWNER=$DIR in its environment: only processes carrying that mark are ever
# signalled, so a stale pid file can never hit someone else's process.

lf_pidfile() { echo "$LF_DIR/run/$1.pid"; }

# lf_alive PID: the process exists and is not a zombie.
lf_alive() {
  local pid=$1 stat
  [[ -n $pid && -r /proc/$pid/stat ]] || return 1
  stat=$(cut -d' ' -f3 "/proc/$pid/stat" 2>/dev/null) || return 1
  [[ $stat != Z && $stat != X ]]
}

# lf_owned PID: the process was started by this harness for this state folder.
lf_owned() {
  local pid=$1
  lf_alive "$pid" || return 1
  grep -qzxF "LEDGERFENCE_FABRIC_OWNER=$LF_DIR" "/proc/$pid/environ" 2>/dev/null
}

# lf_pid NAME: the pid of a running component, or nothing.
lf_pid() {
  local f pid i
  f=$(lf_pidfile "$1")
  [[ -f $f ]] || return 0
  pid=$(<"$f")
  # While a process execs, its environment can read as empty for a moment:
  # a live process is asked again before it is taken for another's.
  for ((i = 0; i < 5; i++)); do
    if lf_owned "$pid"; then
      echo "$pid"
      return 0
    fi
    lf_alive "$pid" || return 0
    sleep 0.05
  done
}

# lf_spawn NAME ENV... -- CMD ARGS...: start CMD in the background, log to logs/NAME.log.
lf_spawn() {
  local name=$1
  shift
  local envs=()
  while [[ $1 != -- ]]; do
    envs+=("$1")
    shift
  done
  shift
  [[ -z $(lf_pid "$name") ]] || lf_die "$name is already running (pid $(lf_pid "$name"))"
  mkdir -p "$LF_DIR/run" "$LF_DIR/logs"
  local pidf
  pidf=$(lf_pidfile "$name")
  rm -f "$pidf"
  echo "---- start $(date -u +%Y-%m-%dT%H:%M:%S.%3NZ)" >>"$LF_DIR/logs/$name.log"
  # The inner shell writes its own pid, then becomes the command (exec keeps the pid).
  # shellcheck disable=SC2016 # expanded by the inner shell
  env "${envs[@]}" LEDGERFENCE_FABRIC_OWNER="$LF_DIR" \
    setsid bash -c 'echo $$ >"$0"; exec "$@"' "$pidf" "$@" \
    </dev/null >>"$LF_DIR/logs/$name.log" 2>&1 &
  local i
  for ((i = 0; i < 100; i++)); do
    [[ -s $pidf ]] && return 0
    sleep 0.02
  done
  lf_die "$name did not start"
}

# lf_signal NAME SIG: send SIG to the component's process group. For STOP it
# returns once the process is stopped, so that nothing it answers after that
# was answered before.
lf_signal() {
  local pid i
  pid=$(lf_pid "$1")
  [[ -n $pid ]] || return 1
  kill -s "$2" -- "-$pid" 2>/dev/null || kill -s "$2" "$pid" 2>/dev/null || true
  if [[ $2 == STOP ]]; then
    for ((i = 0; i < 100; i++)); do
      [[ $(cut -d' ' -f3 "/proc/$pid/stat" 2>/dev/null) == T ]] && return 0
      sleep 0.02
    done
    lf_die "$1 (pid $pid) did not stop within 2 s of SIGSTOP"
  fi
}

# lf_stop NAME [TERM|KILL]: stop a component and wait until it is gone (SIGKILL after 10 s).
lf_stop() {
  local name=$1 sig=${2:-TERM} pid i
  pid=$(lf_pid "$name")
  if [[ -n $pid ]]; then
    # a paused process must run again to handle SIGTERM
    kill -s CONT -- "-$pid" 2>/dev/null || true
    # (it may already be gone: a paused process with a SIGTERM pending dies on SIGCONT)
    lf_signal "$name" "$sig" || true
    for ((i = 0; i < 200; i++)); do
      lf_alive "$pid" || break
      sleep 0.05
    done
    if lf_alive "$pid"; then
      lf_log "$name (pid $pid) ignored SIG$sig for 10 s; sending SIGKILL"
      kill -s KILL -- "-$pid" 2>/dev/null || kill -s KILL "$pid" 2>/dev/null || true
      for ((i = 0; i < 100; i++)); do
        lf_alive "$pid" || break
        sleep 0.05
      done
    fi
  fi
  rm -f "$(lf_pidfile "$name")"
}

# lf_stray_pids: processes carrying this state folder's mark (whatever their pid files say).
lf_stray_pids() {
  local p pid
  for p in /proc/[0-9]*; do
    pid=${p#/proc/}
    [[ $pid == "$$" || $pid == "$BASHPID" ]] && continue
    if lf_owned "$pid"; then echo "$pid"; fi
  done
}

# lf_port_open PORT: something listens on 127.0.0.1:PORT.
lf_port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# lf_ports_free NAME PORT...: fail unless nothing listens on the ports NAME is about to take, so that
# a stray process holding one is never taken for NAME once NAME is started.
lf_ports_free() {
  local name=$1 port
  shift
  for port in "$@"; do
    if lf_port_open "$port"; then
      lf_die "port $port of $name is already taken by another process"
    fi
  done
}

# lf_wait_port NAME PORT [SECONDS]: wait until NAME listens on PORT; fail early if NAME died.
lf_wait_port() {
  local name=$1 port=$2 secs=${3:-60} i pid
  for ((i = 0; i < secs * 20; i++)); do
    lf_port_open "$port" && return 0
    pid=$(lf_pid "$name")
    if [[ -z $pid ]]; then
      tail -n 20 "$LF_DIR/logs/$name.log" >&2 || true
      lf_die "$name exited before listening on port $port (log: $LF_DIR/logs/$name.log)"
    fi
    sleep 0.05
  done
  lf_die "$name not listening on port $port after ${secs}s (log: $LF_DIR/logs/$name.log)"
}

# lf_retry SECONDS CMD...: run CMD until it succeeds, at most SECONDS; its last output on failure.
lf_retry() {
  local secs=$1 deadline out
  shift
  deadline=$((SECONDS + secs))
  while true; do
    if out=$("$@" 2>&1); then
      [[ -z $out ]] || printf '%s\n' "$out"
      return 0
    fi
    if ((SECONDS >= deadline)); then
      printf '%s\n' "$out" >&2
      return 1
    fi
    sleep 0.2
  done
}

# lf_http_get PORT PATH: body of a plain HTTP GET on 127.0.0.1 (no curl needed).
lf_http_get() {
  local port=$1 path=$2
  (
    exec 3<>"/dev/tcp/127.0.0.1/$port" || exit 1
    printf 'GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' "$path" >&3
    sed '1,/^\r\{0,1\}$/d' <&3
  ) 2>/dev/null
}

# lf_peer_sees_others N WANT: peer N's gossip knows at least WANT other organisations' peers on the
# channel, so its gateway can plan endorsements that need them.
lf_peer_sees_others() {
  local ops=LF_PEER$1_OPS_PORT known
  known=$(lf_http_get "${!ops}" /metrics |
    awk -v c="$LF_CHANNEL" '$1 == "gossip_membership_total_peers_known{channel=\"" c "\"}" { print $2 }')
  [[ -n $known ]] && ((known >= $2))
}

# lf_running_peers: the numbers of the peers that run now, one a line.
lf_running_peers() {
  local n
  for n in "${LF_ORG_NUMS[@]}"; do
    if [[ -n $(lf_pid "peer$n") ]]; then echo "$n"; fi
  done
}

# lf_peer_height N: peer N's block height on the channel (from its metrics), or nothing.
lf_peer_height() {
  local ops=LF_PEER$1_OPS_PORT
  lf_http_get "${!ops}" /metrics |
    awk -v c="$LF_CHANNEL" '$1 == "ledger_blockchain_height{channel=\"" c "\"}" { print $2 }'
}

# lf_wait_caught_up N SECONDS: peer N has at least the height the highest other running peer has now.
lf_wait_caught_up() {
  local n=$1 secs=$2 o h target="" other="" deadline
  for o in $(lf_running_peers); do
    ((o == n)) && continue
    h=$(lf_peer_height "$o")
    [[ -n $h ]] || continue
    if [[ -z $target ]] || ((h > target)); then
      target=$h
      other=$o
    fi
  done
  [[ -n $target ]] || return 0
  deadline=$((SECONDS + secs))
  while true; do
    h=$(lf_peer_height "$n")
    [[ -n $h ]] && ((h >= target)) && return 0
    ((SECONDS < deadline)) || lf_die "peer$n at height ${h:-?}, not caught up with peer$other ($target) after ${secs}s"
    sleep 0.1
  done
}

# lf_wait_gossip [SECONDS]: wait until each running peer knows every other running peer.
lf_wait_gossip() {
  local secs=${1:-60} n others running
  mapfile -t running < <(lf_running_peers)
  others=$((${#running[@]} - 1))
  ((others > 0)) || return 0
  for n in "${running[@]}"; do
    lf_retry "$secs" lf_peer_sees_others "$n" "$others" ||
      lf_die "peer$n does not see the other $others organisations' peers after ${secs}s (log: $LF_DIR/logs/peer$n.log)"
  done
}

# ---- components ---------------------------------------------------------------------------------
# Each start_X starts one component from the state folder and waits until it listens.

lf_start_orderer() {
  local o=$LF_ORDERER_NODE d=$LF_DIR/data/orderer
  mkdir -p "$d"
  lf_ports_free orderer "$LF_ORDERER_PORT" "$LF_ORDERER_ADMIN_PORT"
  lf_spawn orderer \
    FABRIC_CFG_PATH="$LF_DIR/config" \
    FABRIC_LOGGING_SPEC="$LF_LOG_SPEC" \
    ORDERER_GENERAL_LISTENADDRESS=127.0.0.1 \
    ORDERER_GENERAL_LISTENPORT="$LF_ORDERER_PORT" \
    ORDERER_GENERAL_LOCALMSPID=OrdererMSP \
    ORDERER_GENERAL_LOCALMSPDIR="$o/msp" \
    ORDERER_GENERAL_TLS_ENABLED=true \
    ORDERER_GENERAL_TLS_PRIVATEKEY="$o/tls/server.key" \
    ORDERER_GENERAL_TLS_CERTIFICATE="$o/tls/server.crt" \
    ORDERER_GENERAL_TLS_ROOTCAS="[$o/tls/ca.crt]" \
    ORDERER_GENERAL_BOOTSTRAPMETHOD=none \
    ORDERER_CHANNELPARTICIPATION_ENABLED=true \
    ORDERER_FILELEDGER_LOCATION="$d/ledger" \
    ORDERER_CONSENSUS_WALDIR="$d/etcdraft/wal" \
    ORDERER_CONSENSUS_SNAPDIR="$d/etcdraft/snap" \
    ORDERER_OPERATIONS_LISTENADDRESS="127.0.0.1:$LF_ORDERER_OPS_PORT" \
    ORDERER_METRICS_PROVIDER=prometheus \
    ORDERER_ADMIN_LISTENADDRESS="127.0.0.1:$LF_ORDERER_ADMIN_PORT" \
    ORDERER_ADMIN_TLS_ENABLED=true \
    ORDERER_ADMIN_TLS_PRIVATEKEY="$o/tls/server.key" \
    ORDERER_ADMIN_TLS_CERTIFICATE="$o/tls/server.crt" \
    ORDERER_ADMIN_TLS_ROOTCAS="[$o/tls/ca.crt]" \
    ORDERER_ADMIN_TLS_CLIENTAUTHREQUIRED=true \
    ORDERER_ADMIN_TLS_CLIENTROOTCAS="[$LF_ORDERER_TLS_CA]" \
    -- "$LF_BIN/orderer"
  lf_wait_port orderer "$LF_ORDERER_ADMIN_PORT"
  lf_wait_port orderer "$LF_ORDERER_PORT"
}

# Gossip runs on shorter timers than Fabric's defaults (alive and state info every 1 s, reconnect
# every 2 s instead of 5/4/25 s), so that a (re)started peer is back in the other peers' view, and
# usable for endorsements, about a second after it starts instead of five to thirty.
lf_start_peer() {
  local n=$1 p d port ccport ops host
  p=$(lf_peer_dir "$n")
  host=$(lf_peer_host "$n")
  d=$LF_DIR/data/peer$n
  port=$(lf_peer_port "$n")
  ccport=LF_PEER${n}_CC_PORT
  ops=LF_PEER${n}_OPS_PORT
  mkdir -p "$d"
  lf_ports_free "peer$n" "$port" "${!ccport}"
  lf_spawn "peer$n" \
    FABRIC_CFG_PATH="$LF_DIR/config" \
    FABRIC_LOGGING_SPEC="$LF_LOG_SPEC" \
    CORE_PEER_ID="$host" \
    CORE_PEER_ADDRESS="127.0.0.1:$port" \
    CORE_PEER_LISTENADDRESS="127.0.0.1:$port" \
    CORE_PEER_CHAINCODEADDRESS="127.0.0.1:${!ccport}" \
    CORE_PEER_CHAINCODELISTENADDRESS="127.0.0.1:${!ccport}" \
    CORE_PEER_GOSSIP_BOOTSTRAP="127.0.0.1:$port" \
    CORE_PEER_GOSSIP_EXTERNALENDPOINT="127.0.0.1:$port" \
    CORE_PEER_GOSSIP_USELEADERELECTION=false \
    CORE_PEER_GOSSIP_ORGLEADER=true \
    CORE_PEER_LOCALMSPID="Org${n}MSP" \
    CORE_PEER_MSPCONFIGPATH="$p/msp" \
    CORE_PEER_TLS_ENABLED=true \
    CORE_PEER_TLS_CERT_FILE="$p/tls/server.crt" \
    CORE_PEER_TLS_KEY_FILE="$p/tls/server.key" \
    CORE_PEER_TLS_ROOTCERT_FILE="$LF_DIR/crypto/peer-tls-roots.pem" \
    CORE_PEER_GATEWAY_ENABLED=true \
    CORE_PEER_FILESYSTEMPATH="$d" \
    CORE_LEDGER_SNAPSHOTS_ROOTDIR="$d/snapshots" \
    CORE_OPERATIONS_LISTENADDRESS="127.0.0.1:${!ops}" \
    CORE_METRICS_PROVIDER=prometheus \
    CORE_PEER_GOSSIP_RECONNECTINTERVAL=2s \
    CORE_PEER_GOSSIP_ALIVETIMEINTERVAL=1s \
    CORE_PEER_GOSSIP_PUBLISHSTATEINFOINTERVAL=1s \
    CORE_PEER_GOSSIP_REQUESTSTATEINFOINTERVAL=1s \
    CORE_PEER_GOSSIP_MEMBERSHIPTRACKERINTERVAL=1s \
    -- "$LF_BIN/peer" node start
  lf_wait_port "peer$n" "$port"
}

# The CA's bootstrap admin secret lives in ca/orgN/bootstrap.secret (mode 0600, never in the repo).
lf_start_ca() {
  local n=$1
  local h=$LF_DIR/ca/org$n ops=LF_CA${n}_OPS_PORT
  [[ -f $h/bootstrap.secret ]] || lf_die "CA of org$n not initialised (run up.sh)"
  lf_ports_free "ca$n" "$(lf_ca_port "$n")"
  lf_spawn "ca$n" \
    FABRIC_CA_SERVER_OPERATIONS_LISTENADDRESS="127.0.0.1:${!ops}" \
    -- "$LF_BIN/fabric-ca-server" start \
    -H "$h/server" \
    -b "admin:$(<"$h/bootstrap.secret")" \
    --address 127.0.0.1 \
    --port "$(lf_ca_port "$n")" \
    --ca.name "$(lf_ca_name "$n")" \
    --ca.certfile "$h/ca-cert.pem" \
    --ca.keyfile "$h/ca-key.pem" \
    --tls.enabled \
    --tls.certfile "$h/tls-cert.pem" \
    --tls.keyfile "$h/tls-key.pem"
  lf_wait_port "ca$n" "$(lf_ca_port "$n")"
}

# The chaincode server: CHAINCODE_ID is the installed package id, CHAINCODE_SERVER_ADDRESS where
# the peers dial it (connection.json of the package); with TLS, its key pair and the CA that the
# peers' client certificates (also in connection.json) chain to.
lf_start_cc() {
  [[ -x $LF_DIR/bin/ledgerfence-cc ]] || lf_die "chaincode not built (run deploy.sh)"
  [[ -s $LF_DIR/cc/package_id ]] || lf_die "chaincode not installed (run deploy.sh)"
  local tlsenv=() t=$LF_DIR/cc/tls
  if [[ $LF_CC_TLS == 1 ]]; then
    tlsenv=(CHAINCODE_TLS_KEY_FILE="$t/server-key.pem" CHAINCODE_TLS_CERT_FILE="$t/server-cert.pem"
      CHAINCODE_TLS_CLIENT_CA_FILE="$t/ca-cert.pem")
  fi
  lf_ports_free cc "$LF_CC_PORT"
  lf_spawn cc \
    CHAINCODE_ID="$(<"$LF_DIR/cc/package_id")" \
    CHAINCODE_SERVER_ADDRESS="127.0.0.1:$LF_CC_PORT" \
    "${tlsenv[@]}" \
    -- "$LF_DIR/bin/ledgerfence-cc"
  lf_wait_port cc "$LF_CC_PORT"
}

# lf_build_cc OUT: build (or copy) the chaincode server binary to OUT.
#   LEDGERFENCE_CC_BIN  a binary already built: copied
#   LEDGERFENCE_CC_PKG  Go package (default ./cmd/ledgerfence-cc, relative to the repository root);
#                       an absolute folder is built in that folder (it may be a module of its own)
lf_build_cc() {
  local out=$1 pkg=${LEDGERFENCE_CC_PKG:-./cmd/ledgerfence-cc}
  if [[ -n ${LEDGERFENCE_CC_BIN:-} ]]; then
    install -m 0755 "$LEDGERFENCE_CC_BIN" "$out.new"
  elif [[ $pkg == /* ]]; then
    (cd "$pkg" && go build -o "$out.new" .)
  else
    (cd "$LF_REPO" && go build -o "$out.new" "$pkg")
  fi
  mv "$out.new" "$out"
}

# lf_orderer_has_leader: the orderer's Raft elected a leader since the orderer last started (its
# log since the last start marker that lf_spawn writes).
lf_orderer_has_leader() {
  awk '/^---- start / { found = 0 } /Raft leader changed: 0 -> 1/ { found = 1 } END { exit !found }' \
    "$LF_DIR/logs/orderer.log"
}

# lf_wait_orderer_leader SECONDS: wait until the orderer has a Raft leader; fail after SECONDS.
lf_wait_orderer_leader() {
  local i
  for ((i = 0; i < $1 * 20; i++)); do
    lf_orderer_has_leader && return 0
    sleep 0.05
  done
  return 1
}

lf_start() {
  [[ " ${LF_COMPONENTS[*]} " == *" $1 "* ]] || lf_die "unknown component: $1 (one of ${LF_COMPONENTS[*]})"
  case $1 in
    orderer) lf_start_orderer ;;
    peer*) lf_start_peer "${1#peer}" ;;
    ca*) lf_start_ca "${1#ca}" ;;
    cc) lf_start_cc ;;
  esac
}

# lf_rss_table: pid, RSS and name of every running component.
lf_rss_table() {
  local c pid rss total=0
  printf '%-8s %8s %10s\n' component pid rss_mib
  for c in "${LF_COMPONENTS[@]}"; do
    pid=$(lf_pid "$c")
    if [[ -z $pid ]]; then
      printf '%-8s %8s %10s\n' "$c" - -
      continue
    fi
    rss=$(awk '/^VmRSS:/ { print $2 }' "/proc/$pid/status")
    total=$((total + rss))
    printf '%-8s %8s %10.1f\n' "$c" "$pid" "$(awk -v k="$rss" 'BEGIN { print k / 1024 }')"
  done
  printf '%-8s %8s %10.1f\n' total '' "$(awk -v k="$total" 'BEGIN { print k / 1024 }')"
}

# lf_write_env: $DIR/network.env, the summary that tests and clients read (KEY=VALUE lines, no
# quoting; values never hold white space). Written whole, then renamed into place.
lf_write_env() {
  local f=$LF_DIR/network.env n pkg=""
  [[ -s $LF_DIR/cc/package_id ]] && pkg=$(<"$LF_DIR/cc/package_id")
  {
    echo "# ledgerfence native Fabric network; written by up.sh/deploy.sh $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "LEDGERFENCE_FABRIC_DIR=$LF_DIR"
    echo "LEDGERFENCE_FABRIC_BIN=$LF_BIN"
    echo "LEDGERFENCE_FABRIC_CFG=$LF_DIR/config"
    echo "LEDGERFENCE_FABRIC_CTL=$LF_SRC/ctl.sh"
    echo "LEDGERFENCE_FABRIC_CHANNEL=$LF_CHANNEL"
    echo "LEDGERFENCE_FABRIC_CHAINCODE=$LF_CC_NAME"
    echo "LEDGERFENCE_FABRIC_CC_LABEL=$LF_CC_LABEL"
    echo "LEDGERFENCE_FABRIC_CC_PACKAGE_ID=$pkg"
    echo "LEDGERFENCE_FABRIC_CC_ADDRESS=127.0.0.1:$LF_CC_PORT"
    echo "LEDGERFENCE_FABRIC_CC_TLS=$([[ $LF_CC_TLS == 1 ]] && echo true || echo false)"
    echo "LEDGERFENCE_FABRIC_ORDERER_ADDRESS=127.0.0.1:$LF_ORDERER_PORT"
    echo "LEDGERFENCE_FABRIC_ORDERER_SERVER_NAME=orderer.$LF_DOMAIN"
    echo "LEDGERFENCE_FABRIC_ORDERER_TLS_CA=$LF_ORDERER_TLS_CA"
    echo "LEDGERFENCE_FABRIC_ORDERER_ADMIN_ADDRESS=127.0.0.1:$LF_ORDERER_ADMIN_PORT"
    echo "LEDGERFENCE_FABRIC_ORDERER_OPERATIONS=127.0.0.1:$LF_ORDERER_OPS_PORT"
    echo "LEDGERFENCE_FABRIC_ORGS=$(printf 'Org%sMSP\n' "${LF_ORG_NUMS[@]}" | paste -sd,)"
    for n in "${LF_ORG_NUMS[@]}"; do
      local ops=LF_PEER${n}_OPS_PORT
      echo "LEDGERFENCE_FABRIC_ORG${n}_MSPID=Org${n}MSP"
      echo "LEDGERFENCE_FABRIC_ORG${n}_PEER_ADDRESS=127.0.0.1:$(lf_peer_port "$n")"
      echo "LEDGERFENCE_FABRIC_ORG${n}_PEER_SERVER_NAME=$(lf_peer_host "$n")"
      echo "LEDGERFENCE_FABRIC_ORG${n}_PEER_TLS_CA=$(lf_peer_tls_ca "$n")"
      echo "LEDGERFENCE_FABRIC_ORG${n}_PEER_OPERATIONS=127.0.0.1:${!ops}"
      echo "LEDGERFENCE_FABRIC_ORG${n}_CA_URL=$(lf_ca_url "$n")"
      echo "LEDGERFENCE_FABRIC_ORG${n}_CA_NAME=$(lf_ca_name "$n")"
      echo "LEDGERFENCE_FABRIC_ORG${n}_CA_TLS_CA=$(lf_peer_tls_ca "$n")"
      echo "LEDGERFENCE_FABRIC_ORG${n}_ADMIN=$LF_DIR/identities/org$n-admin"
    done
    echo "LEDGERFENCE_FABRIC_IDENTITIES=$LF_DIR/identities"
  } >"$f.tmp"
  mv "$f.tmp" "$f"
}

lf_settings
lf_paths
