#!/usr/bin/env bash
# ctl.sh: control single components of a running network, e.g. to kill and restart them under load.
#
#   ctl.sh ACTION COMPONENT...
#
# ACTION     start    start it (from the state folder, same ports and keys) and wait until it listens
#                     (the orderer: until Raft has a leader; a peer: until it caught up with the
#                     highest other peer's ledger height and the running peers' gossip know each
#                     other again)
#            stop     SIGTERM, wait until gone (SIGKILL after 10 s)
#            kill     SIGKILL, like a crash; wait until gone
#            restart  stop, then start
#            pause    SIGSTOP (the process hangs: connections stay open, nothing answers)
#            resume   SIGCONT
#            status   pid and resident memory of each component
# COMPONENT  orderer peer1 peer2 ca1 ca2 cc (and peer3 ca3 with three organisations), or all
# peerN is OrgNMSP's peer, caN its CA; cc is the chaincode server.
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

(($# >= 1)) || { sed -n '2,17p' "${BASH_SOURCE[0]}" >&2; exit 2; }
action=$1
shift
[[ -f $LF_DIR/$LF_MARK ]] || lf_die "no network in $LF_DIR (run up.sh)"
if [[ $action == status ]]; then
  lf_rss_table
  exit 0
fi
(($# >= 1)) || lf_die "name a component: ${LF_COMPONENTS[*]} or all"
comps=()
for c in "$@"; do
  if [[ $c == all ]]; then
    comps+=("${LF_COMPONENTS[@]}")
    continue
  fi
  [[ " ${LF_COMPONENTS[*]} " == *" $c "* ]] || lf_die "unknown component: $c (one of ${LF_COMPONENTS[*]} all)"
  comps+=("$c")
done
lf_bin

# start_one NAME [later]: start a component; a peer started "later" is waited for by settle_peer.
later=()
start_one() {
  if [[ -n $(lf_pid "$1") ]]; then
    lf_log "$1 is already running (pid $(lf_pid "$1"))"
    return 0
  fi
  lf_start "$1"
  case $1 in
    # The single Raft node elects itself about a second after a restart, but once in a while (seen
    # once, restarted under load) Fabric's etcdraft leaves it without voters and it never does: the
    # channel is stuck until the orderer restarts. Restart it once more in that case, and say so.
    orderer)
      if ! lf_wait_orderer_leader 15; then
        lf_log "orderer has no Raft leader 15 s after starting; restarting it once more"
        lf_stop orderer TERM
        lf_start orderer
        lf_wait_orderer_leader 15 || lf_die "orderer has no Raft leader (log: $LF_DIR/logs/orderer.log)"
      fi
      ;;
    peer*)
      if [[ ${2:-} == later ]]; then
        later+=("$1")
      else
        settle_peer "$1"
      fi
      return 0
      ;;
  esac
  lf_log "$1 started (pid $(lf_pid "$1"))"
}

# settle_peer NAME: a peer is back once it has caught up with the other peers' ledgers and the
# running peers' gossip know each other again (so gateways can plan endorsements that need it).
settle_peer() {
  lf_wait_caught_up "${1#peer}" 60
  lf_wait_gossip 60
  lf_log "$1 started (pid $(lf_pid "$1"))"
}

# Peers named together are started together, then waited for: with three organisations, a peer
# started while another organisation's peer is down does not learn the running one through gossip
# until the next block (README.md, "Restarting parts").
for c in "${comps[@]}"; do
  case $action in
    start) start_one "$c" later ;;
    stop) lf_stop "$c" TERM ;;
    kill) lf_stop "$c" KILL ;;
    restart)
      lf_stop "$c" TERM
      start_one "$c"
      ;;
    pause) lf_signal "$c" STOP || lf_die "$c is not running" ;;
    resume) lf_signal "$c" CONT || lf_die "$c is not running" ;;
    *) lf_die "unknown action: $action" ;;
  esac
done
for c in "${later[@]}"; do
  settle_peer "$c"
done
