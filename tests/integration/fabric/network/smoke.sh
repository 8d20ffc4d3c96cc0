#!/usr/bin/env bash
# smoke.sh: bring the network up, check it, take it down, check nothing is left.
#
# Checks: the network comes up; the chaincode is committed with both organisations' approval and
# answers on both peers; a write needs the endorsement of both organisations (MAJORITY); a hostagent enrolled through Org1's CA chains to Org1MSP's CA and carries
# the ledgerfence attributes in its certificate (OID 1.2.3.4.5.6.7.8.1), an identity without a
# role carries none; the chaincode server and a peer can be killed and restarted; down.sh leaves
# no process and no state folder.
# Runs in its own state folder and port range unless LEDGERFENCE_FABRIC_DIR / _PORT_BASE are set,
# so it does not disturb a network already running with the defaults. LEDGERFENCE_SMOKE_WRITE_ARGS:
# the write to try (default: PutHost of the ledgerfence chaincode, as identity hadmin).
set -euo pipefail
export LEDGERFENCE_FABRIC_DIR=${LEDGERFENCE_FABRIC_DIR:-/tmp/ledgerfence-fabric-smoke}
export LEDGERFENCE_FABRIC_PORT_BASE=${LEDGERFENCE_FABRIC_PORT_BASE:-17150}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
. "$here/lib.sh"

passed=0
failed=0
ok() { echo "ok - $*"; passed=$((passed + 1)); }
not_ok() { echo "not ok - $*"; failed=$((failed + 1)); }
check() { # DESCRIPTION CMD...
  local d=$1
  shift
  if "$@"; then ok "$d"; else not_ok "$d"; fi
}
cleanup() { "$here/down.sh" >/dev/null 2>&1 || true; }
trap cleanup EXIT

t0=$(lf_now)
if "$here/up.sh"; then ok "up.sh in $(lf_since "$t0")s"; else
  not_ok "up.sh"
  echo "$passed passed, $((failed)) failed"
  exit 1
fi
lf_settings
lf_bin

# ---- network.env ---------------------------------------------------------------------------------
envf=$LF_DIR/network.env
# shellcheck source=/dev/null
. "$envf"
keys_set() {
  local k
  for k in DIR CHANNEL CHAINCODE CC_PACKAGE_ID CC_ADDRESS ORDERER_ADDRESS ORDERER_SERVER_NAME ORDERER_TLS_CA \
    ORG1_MSPID ORG1_PEER_ADDRESS ORG1_PEER_SERVER_NAME ORG1_PEER_TLS_CA ORG1_CA_URL ORG1_ADMIN \
    ORG2_MSPID ORG2_PEER_ADDRESS ORG2_PEER_SERVER_NAME ORG2_PEER_TLS_CA ORG2_CA_URL ORG2_ADMIN IDENTITIES; do
    local v="LEDGERFENCE_FABRIC_$k"
    [[ -n ${!v:-} ]] || { echo "  $v is empty" >&2; return 1; }
  done
  [[ -f $LEDGERFENCE_FABRIC_ORDERER_TLS_CA && -f $LEDGERFENCE_FABRIC_ORG1_PEER_TLS_CA && -f $LEDGERFENCE_FABRIC_ORG2_PEER_TLS_CA ]]
}
check "network.env names every endpoint, TLS CA and identity folder" keys_set

# ---- chaincode -------------------------------------------------------------------------------------
committed() {
  local o
  lf_admin 1
  o=$(peer lifecycle chaincode querycommitted --channelID "$LF_CHANNEL" --name "$LF_CC_NAME" 2>&1) || return 1
  echo "  $o"
  [[ $o == *"Sequence: 1"* && $o == *"Org1MSP: true"* && $o == *"Org2MSP: true"* ]]
}
check "chaincode $LF_CC_NAME committed on $LF_CHANNEL, approved by Org1MSP and Org2MSP" committed
answers() { # N
  lf_admin "$1"
  peer chaincode query -C "$LF_CHANNEL" -n "$LF_CC_NAME" -c '{"Args":["org.hyperledger.fabric:GetMetadata"]}' >/dev/null
}
check "chaincode answers through peer1 (Org1MSP)" answers 1
check "chaincode answers through peer2 (Org2MSP)" answers 2
policy() { # the channel's default endorsement policy is MAJORITY Endorsement
  grep -A3 'Endorsement:' "$LF_DIR/configtx/configtx.yaml" | grep -q 'MAJORITY Endorsement'
}
check "channel endorsement policy is MAJORITY Endorsement" policy

# a write needs both organisations: endorsed by Org1's peer alone it is invalidated at commit
write_args=${LEDGERFENCE_SMOKE_WRITE_ARGS:-'{"Args":["PutHost","{\"host\":\"smoke-host\",\"country\":\"JP\",\"organizations\":[\"CompanyA\"]}"]}'}
invoke_as() { # IDENTITY PEERS(1|12) ARGS
  local id=$LF_DIR/identities/$1 peers=()
  lf_admin 1
  CORE_PEER_LOCALMSPID=$(<"$id/mspid")
  CORE_PEER_MSPCONFIGPATH=$id/msp
  lf_orderer_args
  if [[ $2 == 12 ]]; then
    lf_both_peers_args
    peers=("${LF_PEERS_ARGS[@]}")
  else
    peers=(--peerAddresses "127.0.0.1:$LF_PEER1_PORT" --tlsRootCertFiles "$(lf_peer_tls_ca 1)")
  fi
  peer chaincode invoke "${LF_ORDERER_ARGS[@]}" -C "$LF_CHANNEL" -n "$LF_CC_NAME" "${peers[@]}" \
    -c "$3" --waitForEvent 2>&1
}
one_org_refused() {
  local o
  o=$(invoke_as hadmin 1 "$write_args") && return 1
  echo "  $o" | tail -n1
  [[ $o == *ENDORSEMENT_POLICY_FAILURE* ]]
}
both_orgs_commit() { invoke_as hadmin 12 "$write_args" >/dev/null; }
check "a write endorsed by Org1MSP alone is invalidated (ENDORSEMENT_POLICY_FAILURE)" one_org_refused
check "a write endorsed by Org1MSP and Org2MSP commits" both_orgs_commit

# ---- identities ------------------------------------------------------------------------------------
ids=$LEDGERFENCE_FABRIC_IDENTITIES
attr_oid='1.2.3.4.5.6.7.8.1'
has_attrs() { # NAME ROLE HOST
  local t
  t=$(openssl x509 -in "$ids/$1/cert.pem" -noout -text) || return 1
  grep -A1 "$attr_oid" <<<"$t" | tail -n1 | sed 's/^ */  /'
  grep -q "$attr_oid" <<<"$t" &&
    grep -q "\"ledgerfence.role\":\"$2\"" <<<"$t" &&
    grep -q "\"ledgerfence.host\":\"$3\"" <<<"$t"
}
check "hm1agent's certificate carries ledgerfence.role=hostagent, ledgerfence.host=hm1" has_attrs hm1agent hostagent hm1
check "hm6agent (Org2) carries ledgerfence.host=hm6" has_attrs hm6agent hostagent hm6
no_role() { ! openssl x509 -in "$ids/norole/cert.pem" -noout -text | grep -q 'ledgerfence.role'; }
check "norole's certificate has no ledgerfence.role" no_role
chains() { # NAME N: the certificate verifies against organisation N's CA (the MSP's cacerts)
  local cacerts
  cacerts=$(lf_org_dir "$2")/msp/cacerts
  openssl verify -CAfile "$cacerts"/*.pem "$ids/$1/cert.pem" >/dev/null 2>&1
}
check "hm1agent chains to Org1MSP's CA" chains hm1agent 1
check "hm6agent chains to Org2MSP's CA" chains hm6agent 2
check "hm6agent does not chain to Org1MSP's CA" bash -c "! openssl verify -CAfile $(lf_org_dir 1)/msp/cacerts/*.pem $ids/hm6agent/cert.pem >/dev/null 2>&1"
is_client() { openssl x509 -in "$ids/$1/cert.pem" -noout -subject | grep -q 'OU = client'; }
check "vmm1 is a client identity (NodeOU client)" is_client vmm1
want_ids() {
  local i
  for i in hm1agent hm2agent hm3agent hm4agent hm5agent vmm1 vmm2 padmin hadmin norole hm6agent vmm-org2 \
    org1-admin org1-user org2-admin org2-user; do
    [[ -s $ids/$i/cert.pem && -s $ids/$i/key.pem && -s $ids/$i/mspid && -d $ids/$i/msp ]] ||
      { echo "  identity $i incomplete" >&2; return 1; }
  done
}
check "default identities present with cert.pem, key.pem, mspid, msp/" want_ids
check "enroll.sh adds an identity" bash -c "'$here/enroll.sh' org2 smoke-agent hostagent hm7 >/dev/null && grep -q Org2MSP '$ids/smoke-agent/mspid'"

# ---- restarts --------------------------------------------------------------------------------------
restart_answers() { # COMPONENT ACTION
  "$here/ctl.sh" "$2" "$1" 2>/dev/null || return 1
  [[ $2 == restart ]] || "$here/ctl.sh" start "$1" 2>/dev/null || return 1
  lf_retry 30 answers 1 && lf_retry 30 answers 2
}
check "chaincode server restarted, answers again" restart_answers cc restart
check "peer1 killed (SIGKILL) and started, answers again" restart_answers peer1 kill

# ---- down ------------------------------------------------------------------------------------------
"$here/ctl.sh" status
t1=$(lf_now)
"$here/down.sh"
echo "  down.sh took $(lf_since "$t1")s"
trap - EXIT
check "down.sh removed the state folder" test ! -e "$LF_DIR"
no_strays() { [[ -z $(lf_stray_pids) ]]; }
check "down.sh left no process of the network" no_strays
ports_closed() {
  local p
  for p in "${LF_ALL_PORTS[@]}"; do
    if lf_port_open "$p"; then
      echo "  port $p still open" >&2
      return 1
    fi
  done
}
check "down.sh left no port of the network open" ports_closed

echo "$passed passed, $failed failed"
((failed == 0))
