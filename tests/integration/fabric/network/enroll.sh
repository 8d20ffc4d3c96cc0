#!/usr/bin/env bash
# enroll.sh: register an identity with an organisation's Fabric CA and enrol it.
#
#   enroll.sh [--no-ecert] ORG NAME ROLE [HOST]
#
# ORG   org1, org2, or org3 in a network of three (or Org1MSP, ...)
# NAME  enrolment id, also the folder name under $DIR/identities/
# ROLE  hostagent (needs HOST), hostadmin, vmmanager, policyadmin, ..., or "none" for no role
# HOST  the host a hostagent may write (attribute ledgerfence.host)
#
# The identity is registered with --id.type client (the MSP's NodeOUs classify it as a client) and
# the attributes ledgerfence.role (and ledgerfence.host) requested into the enrolment certificate
# (":ecert"), where the chaincode reads them. --no-ecert registers the attributes without ":ecert",
# so they are NOT in the certificate (an identity for negative tests).
# Output: the identity folder, $DIR/identities/NAME/ with
#   cert.pem  enrolment certificate       key.pem  its private key (0600)
#   ca.pem    the organisation's CA cert  mspid    Org1MSP, Org2MSP or Org3MSP
#   msp/      a complete local MSP (NodeOUs config.yaml included) for the peer CLI
# Running it again for the same NAME re-enrols (a new certificate) with the same attributes;
# asking for other attributes under a name already registered is refused.
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ecert=:ecert
if [[ ${1:-} == --no-ecert ]]; then
  ecert=""
  shift
fi
(($# == 3 || $# == 4)) || { sed -n '2,8p' "${BASH_SOURCE[0]}" >&2; exit 2; }
n=$(lf_org_num "$1")
name=$2
role=$3
host=${4:-}

word='^[A-Za-z0-9._-]{1,64}$'
[[ $name =~ $word ]] || lf_die "identity name must match $word: $name"
[[ $role =~ $word ]] || lf_die "role must match $word: $role"
[[ -z $host || $host =~ $word ]] || lf_die "host must match $word: $host"
[[ $role != hostagent || -n $host ]] || lf_die "a hostagent needs a HOST"

attrs=""
if [[ $role != none ]]; then
  attrs="ledgerfence.role=$role$ecert"
  [[ -z $host ]] || attrs+=",ledgerfence.host=$host$ecert"
elif [[ -n $host ]]; then
  attrs="ledgerfence.host=$host$ecert"
fi

[[ -f $LF_DIR/$LF_MARK ]] || lf_die "no network in $LF_DIR (run up.sh)"
lf_bin
mspid=Org${n}MSP
ca=$LF_DIR/ca/org$n
url=$(lf_ca_url "$n")
caname=$(lf_ca_name "$n")
tlsca=$(lf_peer_tls_ca "$n")
d=$LF_DIR/identities/$name
if [[ -f $d/mspid && $(<"$d/mspid") != "$mspid" ]]; then
  lf_die "identity $name already exists in $(<"$d/mspid")"
fi

client() { fabric-ca-client "$@" --caname "$caname" --tls.certfiles "$tlsca"; }

mkdir -p "$ca/secrets" "$ca/clients"

# the registrar: the CA's bootstrap admin, enrolled once (several enroll.sh may run at a time); it
# adds the affiliation orgN once where the CA's default configuration lacks it (it has org1, org2)
reg=$ca/clients/registrar
(
  flock 8
  if [[ ! -s $reg/msp/signcerts/cert.pem ]]; then
    client enroll -H "$reg" -u "https://admin:$(<"$ca/bootstrap.secret")@127.0.0.1:$(lf_ca_port "$n")" \
      >"$ca/clients/registrar.log" 2>&1 || { cat "$ca/clients/registrar.log" >&2; lf_die "enrolling the registrar of $caname failed"; }
  fi
  if [[ ! -f $ca/clients/affiliation ]]; then
    if ! client affiliation list -H "$reg" -u "$url" --affiliation "org$n" >/dev/null 2>&1; then
      out=$(client affiliation add -H "$reg" -u "$url" "org$n" 2>&1) ||
        { printf '%s\n' "$out" >&2; lf_die "adding the affiliation org$n to $caname failed"; }
    fi
    echo "org$n" >"$ca/clients/affiliation"
  fi
) 8>"$ca/.registrar.lock"

secretf=$ca/secrets/$name
if [[ -s $secretf ]]; then
  [[ $(<"$secretf.attrs") == "$attrs" ]] ||
    lf_die "$name is registered with attributes '$(<"$secretf.attrs")', not '$attrs'; use another name"
else
  secret=$(openssl rand -hex 16)
  regargs=(--id.name "$name" --id.secret "$secret" --id.type client --id.affiliation "org$n")
  [[ -z $attrs ]] || regargs+=(--id.attrs "$attrs")
  out=$(client register -H "$reg" -u "$url" "${regargs[@]}" 2>&1) ||
    { printf '%s\n' "$out" >&2; lf_die "registering $name with $caname failed"; }
  (umask 077 && echo "$secret" >"$secretf" && echo "$attrs" >"$secretf.attrs")
fi

tmp=$(mktemp -d "$ca/clients/$name.XXXXXX")
out=$(client enroll -H "$tmp" -M "$tmp/msp" -u "https://$name:$(<"$secretf")@127.0.0.1:$(lf_ca_port "$n")" 2>&1) ||
  { rm -rf "$tmp"; printf '%s\n' "$out" >&2; lf_die "enrolling $name with $caname failed"; }

cacert=$(cd "$tmp/msp/cacerts" && ls)
cat >"$tmp/msp/config.yaml" <<EOF
NodeOUs:
  Enable: true
  ClientOUIdentifier: {Certificate: cacerts/$cacert, OrganizationalUnitIdentifier: client}
  PeerOUIdentifier: {Certificate: cacerts/$cacert, OrganizationalUnitIdentifier: peer}
  AdminOUIdentifier: {Certificate: cacerts/$cacert, OrganizationalUnitIdentifier: admin}
  OrdererOUIdentifier: {Certificate: cacerts/$cacert, OrganizationalUnitIdentifier: orderer}
EOF
mkdir -p "$d.new"
mv "$tmp/msp" "$d.new/msp"
rm -rf "$tmp"
cp "$d.new/msp/signcerts/cert.pem" "$d.new/cert.pem"
install -m 0600 "$d.new/msp/keystore/"*_sk "$d.new/key.pem"
cp "$d.new/msp/cacerts/$cacert" "$d.new/ca.pem"
echo "$mspid" >"$d.new/mspid"
rm -rf "$d"
mv "$d.new" "$d"
echo "$d"
