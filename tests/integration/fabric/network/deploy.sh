#!/usr/bin/env bash
# deploy.sh: build the ledgerfence chaincode, run it as a chaincode service (CCaaS) and define it
# on channel "ledger". Run by up.sh; run it again to rebuild the chaincode and restart its server
# (the package, so its id, stays the same, and the definition is made only once).
# The definition carries its own endorsement policy (lib.sh's lf_cc_policy), stated in every
# organisation's approval and in the commit: AND('Org1MSP.peer','Org2MSP.peer') with two
# organisations, OutOf(2,'Org1MSP.peer','Org2MSP.peer','Org3MSP.peer') with three.
#
# Chaincode source (environment):
#   LEDGERFENCE_CC_PKG  Go package to build (default ./cmd/ledgerfence-cc, relative to the repository
#                       root); an absolute folder is built in that folder (it may be its own module)
#   LEDGERFENCE_CC_BIN  a chaincode binary already built: copied instead of building
#   LEDGERFENCE_CC_READY_ARGS  query that shows the chaincode answers
#                       (default {"Args":["org.hyperledger.fabric:GetMetadata"]}, any contract-api chaincode)
# The chaincode process gets CHAINCODE_ID (the package id) and CHAINCODE_SERVER_ADDRESS.
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

[[ -f $LF_DIR/$LF_MARK ]] || lf_die "no network in $LF_DIR (run up.sh)"
lf_bin
lf_orderer_args
lf_all_peers_args
policy=$(lf_cc_policy)
for c in orderer "${LF_ORG_NUMS[@]/#/peer}"; do
  [[ -n $(lf_pid "$c") ]] || lf_die "$c is not running"
done
ready_args=${LEDGERFENCE_CC_READY_ARGS:-'{"Args":["org.hyperledger.fabric:GetMetadata"]}'}
t0=$(lf_now)

# ---- build -----------------------------------------------------------------------------------------
mkdir -p "$LF_DIR/bin" "$LF_DIR/cc"
lf_build_cc "$LF_DIR/bin/ledgerfence-cc" || lf_die "building the chaincode failed"
t_build=$(lf_since "$t0")

# ---- package: type ccaas, connection.json only (no code); byte-for-byte reproducible -------------
p=$LF_DIR/cc
# Mutual TLS between peers and chaincode server: a CA of its own (made once per state folder, so the
# package id stays the same across deploys), a server certificate for 127.0.0.1 and one client
# certificate that the peers present (it travels in connection.json, as CCaaS has it).
cc_tls() {
  local t=$p/tls
  [[ -s $t/client-cert.pem ]] && return 0
  mkdir -p "$t"
  chmod 700 "$t"
  local cn=ledgerfence-cc.$LF_DOMAIN
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$t/ca-key.pem" 2>/dev/null
  openssl req -x509 -new -key "$t/ca-key.pem" -subj "/O=$LF_DOMAIN/CN=chaincode TLS CA" -days 30 -sha256 \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign \
    -out "$t/ca-cert.pem" 2>/dev/null
  local who eku san
  for who in server client; do
    if [[ $who == server ]]; then
      eku=serverAuth
      san="subjectAltName=DNS:$cn,DNS:localhost,IP:127.0.0.1"
    else
      eku=clientAuth
      san="subjectAltName=DNS:peer.$LF_DOMAIN"
    fi
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$t/$who-key.pem" 2>/dev/null
    openssl req -new -key "$t/$who-key.pem" -subj "/O=$LF_DOMAIN/CN=$cn $who" -out "$t/$who.csr" 2>/dev/null
    printf '%s\n' "$san" "keyUsage=critical,digitalSignature" "extendedKeyUsage=$eku" \
      "basicConstraints=critical,CA:FALSE" >"$t/$who.ext"
    openssl x509 -req -in "$t/$who.csr" -CA "$t/ca-cert.pem" -CAkey "$t/ca-key.pem" \
      -set_serial "0x$(openssl rand -hex 16)" -days 30 -sha256 -extfile "$t/$who.ext" \
      -out "$t/$who-cert.pem" 2>/dev/null
    rm -f "$t/$who.csr" "$t/$who.ext"
  done
}
pem_json() { awk '{ printf "%s\\n", $0 }' "$1"; } # a PEM file as a JSON string body
if [[ $LF_CC_TLS == 1 ]]; then
  cc_tls
  t=$p/tls
  printf '{"address":"127.0.0.1:%s","domain":"ledgerfence-cc.%s","dial_timeout":"10s","tls_required":true,"client_auth_required":true,"client_key":"%s","client_cert":"%s","root_cert":"%s"}\n' \
    "$LF_CC_PORT" "$LF_DOMAIN" "$(pem_json "$t/client-key.pem")" "$(pem_json "$t/client-cert.pem")" \
    "$(pem_json "$t/ca-cert.pem")" >"$p/connection.json"
else
  printf '{"address":"127.0.0.1:%s","dial_timeout":"10s","tls_required":false}\n' "$LF_CC_PORT" >"$p/connection.json"
fi
printf '{"type":"ccaas","label":"%s"}\n' "$LF_CC_LABEL" >"$p/metadata.json"
tarball() { # OUT FILE... (fixed order, owner and time, so the package id depends on content only)
  local o=$1
  shift
  tar -C "$p" --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -cf - "$@" | gzip -n >"$p/$o"
}
tarball code.tar.gz connection.json
tarball "$LF_CC_NAME.tgz" metadata.json code.tar.gz
pkgid=$(peer lifecycle chaincode calculatepackageid "$p/$LF_CC_NAME.tgz")
echo "$pkgid" >"$p/package_id"

# ---- install on every peer (once) -----------------------------------------------------------------
install_on() { # N
  lf_admin "$1"
  if peer lifecycle chaincode queryinstalled 2>/dev/null | grep -qF "Package ID: $pkgid,"; then
    return 0
  fi
  lf_retry 30 peer lifecycle chaincode install "$p/$LF_CC_NAME.tgz" >/dev/null
}
installers=()
for n in "${LF_ORG_NUMS[@]}"; do
  (install_on "$n") &
  installers+=($!)
done
for n in "${LF_ORG_NUMS[@]}"; do
  wait "${installers[n - 1]}" || lf_die "installing the chaincode on peer$n failed"
done

# ---- chaincode server ------------------------------------------------------------------------------
lf_stop cc
lf_start_cc
t_server=$(lf_since "$t0")

# ---- definition: approved by every organisation, then committed with every peer's endorsement ------
# The definition's parameters, the same in each approval, the readiness check and the commit
# (a definition whose policy differs from an approval's is another definition).
definition=(--channelID "$LF_CHANNEL" --name "$LF_CC_NAME" --version 1 --sequence 1 --signature-policy "$policy")
lf_admin 1
defined() {
  peer lifecycle chaincode querycommitted --channelID "$LF_CHANNEL" --name "$LF_CC_NAME" >/dev/null 2>&1
}
approve() { # N
  lf_admin "$1"
  local deadline=$((SECONDS + 60)) o
  while true; do
    if o=$(peer lifecycle chaincode approveformyorg "${LF_ORDERER_ARGS[@]}" "${definition[@]}" \
      --package-id "$pkgid" --waitForEvent 2>&1); then
      return 0
    fi
    # an earlier try got through after all
    [[ $o == *"unchanged content"* ]] && return 0
    ((SECONDS < deadline)) || { printf '%s\n' "$o" >&2; return 1; }
    sleep 0.2
  done
}
ready_to_commit() { # N: peer N has seen every organisation approve this definition
  lf_admin "$1"
  local o
  o=$(peer lifecycle chaincode checkcommitreadiness "${definition[@]}" --output json 2>&1) || return 1
  [[ $(grep -c '"Org[0-9]MSP": true' <<<"$o") == "$LF_ORGS" ]]
}
if ! defined; then
  approvers=()
  for n in "${LF_ORG_NUMS[@]}"; do
    (approve "$n") &
    approvers+=($!)
  done
  for n in "${LF_ORG_NUMS[@]}"; do
    wait "${approvers[n - 1]}" || lf_die "Org${n}MSP could not approve the chaincode definition"
  done
  for n in "${LF_ORG_NUMS[@]}"; do
    lf_retry 30 ready_to_commit "$n" || lf_die "peer$n never saw every organisation's approval"
  done
  lf_admin 1
  if ! o=$(peer lifecycle chaincode commit "${LF_ORDERER_ARGS[@]}" "${definition[@]}" \
    "${LF_PEERS_ARGS[@]}" --waitForEvent 2>&1); then
    defined || { printf '%s\n' "$o" >&2; lf_die "committing the chaincode definition failed"; }
  fi
fi
t_define=$(lf_since "$t0")

# ---- ready: every peer reaches the chaincode server --------------------------------------------------
for n in "${LF_ORG_NUMS[@]}"; do
  (lf_admin "$n" && lf_retry 60 peer chaincode query -C "$LF_CHANNEL" -n "$LF_CC_NAME" -c "$ready_args" >/dev/null) ||
    lf_die "the chaincode does not answer on peer$n (log: $LF_DIR/logs/cc.log)"
done
lf_write_env
lf_log "chaincode $LF_CC_NAME ready in $(lf_since "$t0")s (build ${t_build}s, server up ${t_server}s, defined ${t_define}s): $pkgid, endorsement $policy"
