#!/usr/bin/env bash
# smoke.sh: bring the network up, check it, take it down, check nothing is left.
#
# Checks: the network comes up; the chaincode is committed with every organisation's approval,
# carries its own endorsement policy (not the channel's) and answers on every peer; a write
# endorsed by one organisation is invalidated, one endorsed by two commits; a hostagent enrolled
# through Org1's CA chains to Org1MSP's CA and carries the ledgerfence attributes in its
# certificate (OID 1.2.3.4.5.6.7.8.1), an identity without a role carries none; the chaincode
# server and a peer can be killed and restarted; down.sh leaves no process and no state folder.
# Runs in its own state folder and port range unless LEDGERFENCE_FABRIC_DIR / _PORT_BASE are set,
# so it does not disturb a network already running with the defaults; LEDGERFENCE_FABRIC_ORGS=3
# checks a network of three organisations. LEDGERFENCE_SMOKE_WRITE_ARGS: the write to try
# (default: PutHost of the ledgerfence chaincode, as identity hadmin).
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
  local k n keys=(DIR CHANNEL CHAINCODE CC_PACKAGE_ID CC_ADDRESS ORDERER_ADDRESS ORDERER_SERVER_NAME ORDERER_TLS_CA
    ORGS IDENTITIES)
  for n in "${LF_ORG_NUMS[@]}"; do
    keys+=("ORG${n}_MSPID" "ORG${n}_PEER_ADDRESS" "ORG${n}_PEER_SERVER_NAME" "ORG${n}_PEER_TLS_CA" "ORG${n}_CA_URL" "ORG${n}_ADMIN")
  done
  for k in "${keys[@]}"; do
    local v="LEDGERFENCE_FABRIC_$k"
    [[ -n ${!v:-} ]] || { echo "  $v is empty" >&2; return 1; }
  done
  [[ $LEDGERFENCE_FABRIC_ORGS == "$(printf 'Org%sMSP\n' "${LF_ORG_NUMS[@]}" | paste -sd,)" ]] || return 1
  [[ -f $LEDGERFENCE_FABRIC_ORDERER_TLS_CA ]] || return 1
  for n in "${LF_ORG_NUMS[@]}"; do
    v="LEDGERFENCE_FABRIC_ORG${n}_PEER_TLS_CA"
    [[ -f ${!v} ]] || return 1
  done
}
check "network.env names every endpoint, TLS CA and identity folder" keys_set

# ---- chaincode -------------------------------------------------------------------------------------
orgs=$(printf 'Org%sMSP, ' "${LF_ORG_NUMS[@]}" | sed 's/, $//')
committed() {
  local o n
  lf_admin 1
  o=$(peer lifecycle chaincode querycommitted --channelID "$LF_CHANNEL" --name "$LF_CC_NAME" 2>&1) || return 1
  echo "  $o"
  [[ $o == *"Sequence: 1"* ]] || return 1
  for n in "${LF_ORG_NUMS[@]}"; do
    [[ $o == *"Org${n}MSP: true"* ]] || return 1
  done
}
check "chaincode $LF_CC_NAME committed on $LF_CHANNEL, approved by $orgs" committed
answers() { # N
  lf_admin "$1"
  peer chaincode query -C "$LF_CHANNEL" -n "$LF_CC_NAME" -c '{"Args":["org.hyperledger.fabric:GetMetadata"]}' >/dev/null
}
for n in "${LF_ORG_NUMS[@]}"; do
  check "chaincode answers through peer$n (Org${n}MSP)" answers "$n"
done
# The definition's validation parameter is a protobuf ApplicationPolicy: either a signature policy
# (naming each organisation's peer role) or a reference to a channel policy such as
# /Channel/Application/Endorsement. Its printable bytes tell which.
own_policy() {
  local o vp text n
  lf_admin 1
  o=$(peer lifecycle chaincode querycommitted --channelID "$LF_CHANNEL" --name "$LF_CC_NAME" --output json 2>&1) || return 1
  vp=$(sed -n 's/.*"validation_parameter": *"\([^"]*\)".*/\1/p' <<<"$o")
  text=$(base64 -d <<<"$vp" | tr -c '[:print:]' ' ')
  echo "  validation parameter: $vp (printable: $(tr -s ' ' <<<"$text"))"
  [[ -n $vp && $text != */Channel/* ]] || return 1
  for n in "${LF_ORG_NUMS[@]}"; do
    [[ $text == *"Org${n}MSP"* ]] || return 1
  done
}
check "the definition carries its own endorsement policy over $orgs, not the channel's ($(lf_cc_policy))" own_policy

# a write needs two organisations: endorsed by Org1's peer alone it is invalidated at commit
write_args=${LEDGERFENCE_SMOKE_WRITE_ARGS:-'{"Args":["PutHost","{\"host\":\"smoke-host\",\"country\":\"JP\",\"organizations\":[\"CompanyA\"]}"]}'}
invoke_as() { # IDENTITY PEERS ARGS: PEERS the organisations' numbers, e.g. 1, 12 or 23
  local id=$LF_DIR/identities/$1 peers=() i n
  lf_admin 1
  CORE_PEER_LOCALMSPID=$(<"$id/mspid")
  CORE_PEER_MSPCONFIGPATH=$id/msp
  lf_orderer_args
  for ((i = 0; i < ${#2}; i++)); do
    n=${2:i:1}
    peers+=(--peerAddresses "127.0.0.1:$(lf_peer_port "$n")" --tlsRootCertFiles "$(lf_peer_tls_ca "$n")")
  done
  peer chaincode invoke "${LF_ORDERER_ARGS[@]}" -C "$LF_CHANNEL" -n "$LF_CC_NAME" "${peers[@]}" \
    -c "$3" --waitForEvent 2>&1
}
refused() { # PEERS
  local o
  o=$(invoke_as hadmin "$1" "$write_args") && return 1
  echo "  $o" | tail -n1
  [[ $o == *ENDORSEMENT_POLICY_FAILURE* ]]
}
commits() { invoke_as hadmin "$1" "$write_args" >/dev/null; }
check "a write endorsed by Org1MSP alone is invalidated (ENDORSEMENT_POLICY_FAILURE)" refused 1
check "a write endorsed by Org1MSP and Org2MSP commits" commits 12
if ((LF_ORGS >= 3)); then
  check "a write endorsed by Org3MSP alone is invalidated (ENDORSEMENT_POLICY_FAILURE)" refused 3
  check "a write endorsed by Org2MSP and Org3MSP commits" commits 23
fi

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
if ((LF_ORGS >= 3)); then
  check "hm7agent (Org3) carries ledgerfence.host=hm7" has_attrs hm7agent hostagent hm7
fi
has_role() { # NAME ROLE
  openssl x509 -in "$ids/$1/cert.pem" -noout -text | grep -q "\"ledgerfence.role\":\"$2\""
}
for n in "${LF_ORG_NUMS[@]}"; do
  sfx=-org$n
  ((n > 1)) || sfx=""
  check "attestor$sfx (Org$n) carries ledgerfence.role=attestor" has_role "attestor$sfx" attestor
  check "padmin$sfx (Org$n) carries ledgerfence.role=policyadmin" has_role "padmin$sfx" policyadmin
  check "recorder$sfx (Org$n) carries ledgerfence.role=recorder" has_role "recorder$sfx" recorder
done
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
if ((LF_ORGS >= 3)); then
  check "hm7agent chains to Org3MSP's CA" chains hm7agent 3
fi
is_client() { openssl x509 -in "$ids/$1/cert.pem" -noout -subject | grep -q 'OU = client'; }
check "vmm1 is a client identity (NodeOU client)" is_client vmm1
want_ids() {
  local i want=(hm1agent hm2agent hm3agent hm4agent hm5agent vmm1 vmm2 padmin hadmin norole attestor recorder
    hm6agent vmm-org2 padmin-org2 hadmin-org2 attestor-org2 recorder-org2 org1-admin org1-user org2-admin org2-user)
  ((LF_ORGS < 3)) || want+=(hm7agent vmm-org3 padmin-org3 hadmin-org3 attestor-org3 recorder-org3 org3-admin org3-user)
  for i in "${want[@]}"; do
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
  local n
  for n in "${LF_ORG_NUMS[@]}"; do
    lf_retry 30 answers "$n" || return 1
  done
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
