#!/usr/bin/env bash
# up.sh: start a fresh native Fabric network on 127.0.0.1 and deploy the ledgerfence chaincode.
#
#   up.sh [--no-deploy] [HOST...]
#
# One Raft orderer (TLS, channel participation, no system channel), peer0 of Org1MSP and of
# Org2MSP (and of Org3MSP with LEDGERFENCE_FABRIC_ORGS=3), a Fabric CA per organisation signing
# with the org's CA key, channel "ledger", identities enrolled through the CAs, and the chaincode
# as a service (deploy.sh) whose definition carries its own endorsement policy: both
# organisations, or two of three. A network already running in the state folder is taken down
# first. HOST... are the Org1 hosts that get a hostagent identity (default hm1 hm2 hm3 hm4 hm5).
# Writes $DIR/network.env; see README.md.
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

deploy=1
hosts=()
while (($#)); do
  case $1 in
    --no-deploy) deploy=0 ;;
    -h | --help) sed -n '2,12p' "${BASH_SOURCE[0]}"; exit 0 ;;
    -*) lf_die "unknown flag: $1" ;;
    *) hosts+=("$1") ;;
  esac
  shift
done
((${#hosts[@]})) || hosts=(hm1 hm2 hm3 hm4 hm5)

if [[ -e $LF_DIR ]]; then
  lf_log "taking down the network in $LF_DIR first"
  "$LF_SRC/down.sh"
fi
# settings of a previous run are gone with its folder: read the environment again
lf_settings
lf_bin

for port in "${LF_ALL_PORTS[@]}"; do
  if lf_port_open "$port"; then
    lf_die "port $port is in use; choose another range with LEDGERFENCE_FABRIC_PORT_BASE (now $LF_PORT_BASE)"
  fi
done

t0=$(lf_now)
mkdir -p "$LF_DIR"/{run,logs,data,config,configtx,identities,bin}
date -u +%Y-%m-%dT%H:%M:%SZ >"$LF_DIR/$LF_MARK"
lf_save_settings

# the chaincode builds while the network comes up
if ((deploy)); then
  lf_build_cc "$LF_DIR/bin/ledgerfence-cc.prebuilt" >"$LF_DIR/logs/cc-build.log" 2>&1 &
  cc_builder=$!
fi

# ---- crypto material (cryptogen) --------------------------------------------------------------------
cat >"$LF_DIR/crypto-config.yaml" <<EOF
OrdererOrgs:
  - Name: Orderer
    Domain: $LF_DOMAIN
    EnableNodeOUs: true
    Specs:
      - Hostname: orderer
        SANS: [localhost, 127.0.0.1]
PeerOrgs:
EOF
for n in "${LF_ORG_NUMS[@]}"; do
  cat >>"$LF_DIR/crypto-config.yaml" <<EOF
  - Name: Org$n
    Domain: $(lf_org_domain "$n")
    EnableNodeOUs: true
    Template: {Count: 1, SANS: [localhost, 127.0.0.1]}
    Users: {Count: 1}
EOF
done
cryptogen generate --config="$LF_DIR/crypto-config.yaml" --output="$LF_CRYPTO" >"$LF_DIR/logs/cryptogen.log" 2>&1 ||
  { cat "$LF_DIR/logs/cryptogen.log" >&2; lf_die "cryptogen failed"; }
# Every organisation's TLS root, trusted by each peer from its start: a peer learns the other
# organisations' TLS roots only some seconds after it joins the channel, and until then its gossip
# cannot reach their peers, so the gateway finds no endorsers for the endorsement policy.
for n in "${LF_ORG_NUMS[@]}"; do cat "$(lf_peer_tls_ca "$n")"; done >"$LF_CRYPTO/peer-tls-roots.pem"

# ---- channel genesis block (configtxgen) ----------------------------------------------------------
org_yaml() { # N
  local n=$1
  cat <<EOF
  - &Org$n
    Name: Org${n}MSP
    ID: Org${n}MSP
    MSPDir: $(lf_org_dir "$n")/msp
    Policies:
      Readers: {Type: Signature, Rule: "OR('Org${n}MSP.admin', 'Org${n}MSP.peer', 'Org${n}MSP.client')"}
      Writers: {Type: Signature, Rule: "OR('Org${n}MSP.admin', 'Org${n}MSP.client')"}
      Admins: {Type: Signature, Rule: "OR('Org${n}MSP.admin')"}
      Endorsement: {Type: Signature, Rule: "OR('Org${n}MSP.peer')"}
    AnchorPeers:
      - {Host: 127.0.0.1, Port: $(lf_peer_port "$n")}
EOF
}
{
  cat <<EOF
Organizations:
  - &OrdererOrg
    Name: OrdererOrg
    ID: OrdererMSP
    MSPDir: $LF_ORDERER_ORG/msp
    Policies:
      Readers: {Type: Signature, Rule: "OR('OrdererMSP.member')"}
      Writers: {Type: Signature, Rule: "OR('OrdererMSP.member')"}
      Admins: {Type: Signature, Rule: "OR('OrdererMSP.admin')"}
    OrdererEndpoints:
      - 127.0.0.1:$LF_ORDERER_PORT
EOF
  for n in "${LF_ORG_NUMS[@]}"; do org_yaml "$n"; done
  cat <<EOF
Capabilities:
  Channel: &ChannelCapabilities {V2_0: true}
  Orderer: &OrdererCapabilities {V2_0: true}
  Application: &ApplicationCapabilities {V2_5: true}
Application: &ApplicationDefaults
  Organizations:
  Policies:
    Readers: {Type: ImplicitMeta, Rule: "ANY Readers"}
    Writers: {Type: ImplicitMeta, Rule: "ANY Writers"}
    Admins: {Type: ImplicitMeta, Rule: "MAJORITY Admins"}
    # A chaincode definition needs the peers of a majority of the organisations (both of two, two
    # of three). The ledgerfence chaincode's definition states its own endorsement policy
    # (deploy.sh), so the channel's default below applies to no transaction of it.
    LifecycleEndorsement: {Type: ImplicitMeta, Rule: "MAJORITY Endorsement"}
    Endorsement: {Type: ImplicitMeta, Rule: "MAJORITY Endorsement"}
  Capabilities: *ApplicationCapabilities
Orderer: &OrdererDefaults
  OrdererType: etcdraft
  # Cut a block as soon as one transaction is there (latency over throughput; see README.md).
  BatchTimeout: $LF_BATCH_TIMEOUT
  BatchSize:
    MaxMessageCount: $LF_MAX_MESSAGES
    AbsoluteMaxBytes: 99 MB
    PreferredMaxBytes: 512 KB
  Organizations:
  Policies:
    Readers: {Type: ImplicitMeta, Rule: "ANY Readers"}
    Writers: {Type: ImplicitMeta, Rule: "ANY Writers"}
    Admins: {Type: ImplicitMeta, Rule: "MAJORITY Admins"}
    BlockValidation: {Type: ImplicitMeta, Rule: "ANY Writers"}
Channel: &ChannelDefaults
  Policies:
    Readers: {Type: ImplicitMeta, Rule: "ANY Readers"}
    Writers: {Type: ImplicitMeta, Rule: "ANY Writers"}
    Admins: {Type: ImplicitMeta, Rule: "MAJORITY Admins"}
  Capabilities: *ChannelCapabilities
Profiles:
  LedgerChannel:
    <<: *ChannelDefaults
    Orderer:
      <<: *OrdererDefaults
      Organizations: [*OrdererOrg]
      Capabilities: *OrdererCapabilities
      EtcdRaft:
        Consenters:
          - Host: 127.0.0.1
            Port: $LF_ORDERER_PORT
            ClientTLSCert: $LF_ORDERER_NODE/tls/server.crt
            ServerTLSCert: $LF_ORDERER_NODE/tls/server.crt
        Options:
          TickInterval: $LF_RAFT_TICK
          ElectionTick: 10
          HeartbeatTick: 1
          MaxInflightBlocks: 5
          SnapshotIntervalSize: 16 MB
    Application:
      <<: *ApplicationDefaults
      Organizations: [$(printf '*Org%s, ' "${LF_ORG_NUMS[@]}" | sed 's/, $//')]
EOF
} >"$LF_DIR/configtx/configtx.yaml"
configtxgen -configPath "$LF_DIR/configtx" -profile LedgerChannel -channelID "$LF_CHANNEL" \
  -outputBlock "$LF_BLOCK" >"$LF_DIR/logs/configtxgen.log" 2>&1 ||
  { cat "$LF_DIR/logs/configtxgen.log" >&2; lf_die "configtxgen failed"; }

# ---- node configuration: copies of Fabric's sample config, two keys changed ------------------------
sample=$(cd "$LF_BIN/../config" && pwd)
cp "$sample/orderer.yaml" "$LF_DIR/config/orderer.yaml"
sed -e "s|^\(\s*\)- name: ccaas_builder\$|\1- name: ledgerfence_ccaas|" \
  -e "s|^\(\s*\)path: /opt/hyperledger/ccaas_builder\$|\1path: $LF_DIR/builders/ccaas|" \
  -e 's|^\(\s*\)endpoint: unix:///var/run/docker.sock$|\1endpoint: ""|' \
  "$sample/core.yaml" >"$LF_DIR/config/core.yaml"
if ! grep -q "path: $LF_DIR/builders/ccaas\$" "$LF_DIR/config/core.yaml" ||
  ! grep -q '^\s*endpoint: ""$' "$LF_DIR/config/core.yaml"; then
  lf_die "Fabric's sample core.yaml changed shape: externalBuilders or vm.endpoint not found"
fi
mkdir -p "$LF_DIR/builders/ccaas/bin"
install -m 0755 "$LF_SRC"/builders/ccaas/bin/{detect,build,release} "$LF_DIR/builders/ccaas/bin/"

# ---- Fabric CA material: the org CA's key and a TLS certificate from the org's TLS CA ---------------
for n in "${LF_ORG_NUMS[@]}"; do
  h=$LF_DIR/ca/org$n
  org=$(lf_org_dir "$n")
  mkdir -p "$h/server"
  chmod 700 "$h"
  cp "$org/ca/ca.$(lf_org_domain "$n")-cert.pem" "$h/ca-cert.pem"
  install -m 0600 "$org/ca/priv_sk" "$h/ca-key.pem"
  openssl rand -hex 16 >"$h/bootstrap.secret"
  chmod 600 "$h/bootstrap.secret"
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$h/tls-key.pem" 2>/dev/null
  openssl req -new -key "$h/tls-key.pem" -subj "/O=org$n.$LF_DOMAIN/CN=$(lf_ca_host "$n")" \
    -out "$h/tls.csr" 2>/dev/null
  printf '%s\n' "subjectAltName=DNS:$(lf_ca_host "$n"),DNS:localhost,IP:127.0.0.1" \
    "keyUsage=critical,digitalSignature,keyEncipherment" "extendedKeyUsage=serverAuth" \
    "basicConstraints=critical,CA:FALSE" >"$h/tls.ext"
  openssl x509 -req -in "$h/tls.csr" -CA "$(lf_peer_tls_ca "$n")" -CAkey "$org/tlsca/priv_sk" \
    -set_serial "0x$(openssl rand -hex 16)" -days 30 -sha256 -extfile "$h/tls.ext" \
    -out "$h/tls-cert.pem" 2>/dev/null
  rm -f "$h/tls.csr" "$h/tls.ext"
done
t_gen=$(lf_since "$t0")

# ---- start orderer, peers and CAs side by side --------------------------------------------------
starters=()
for c in "${LF_COMPONENTS[@]}"; do
  [[ $c == cc ]] && continue
  lf_start "$c" &
  starters+=($!)
done
for p in "${starters[@]}"; do
  wait "$p" || lf_die "a component failed to start (logs in $LF_DIR/logs)"
done
t_start=$(lf_since "$t0")

# ---- identities -----------------------------------------------------------------------------------
# cryptogen's admins and plain user of each organisation (no ledgerfence attributes)
for n in "${LF_ORG_NUMS[@]}"; do
  for who in admin user; do
    [[ $who == admin ]] && u=Admin || u=User1
    d=$LF_DIR/identities/org$n-$who
    src=$(lf_org_dir "$n")/users/$u@$(lf_org_domain "$n")/msp
    mkdir -p "$d"
    cp -r "$src" "$d/msp"
    cp "$src/signcerts/"*.pem "$d/cert.pem"
    install -m 0600 "$src/keystore/priv_sk" "$d/key.pem"
    cp "$src/cacerts/"*.pem "$d/ca.pem"
    echo "Org${n}MSP" >"$d/mspid"
  done
done
# enrolled through each organisation's Fabric CA, with attributes in the enrolment certificate;
# side by side, and while the channel is made and the chaincode deployed (the CAs spend their time
# hashing secrets and writing their databases)
enrolments=()
for h in "${hosts[@]}"; do enrolments+=("org1 ${h}agent hostagent $h"); done
enrolments+=("org1 vmm1 vmmanager" "org1 vmm2 vmmanager" "org1 padmin policyadmin" "org1 hadmin hostadmin"
  "org1 norole none" "org1 attestor attestor" "org1 recorder recorder" "org2 hm6agent hostagent hm6"
  "org2 vmm-org2 vmmanager" "org2 padmin-org2 policyadmin" "org2 hadmin-org2 hostadmin"
  "org2 attestor-org2 attestor" "org2 recorder-org2 recorder")
if ((LF_ORGS >= 3)); then
  enrolments+=("org3 hm7agent hostagent hm7" "org3 vmm-org3 vmmanager" "org3 padmin-org3 policyadmin"
    "org3 hadmin-org3 hostadmin" "org3 attestor-org3 attestor" "org3 recorder-org3 recorder")
fi
enrollers=()
for e in "${enrolments[@]}"; do
  read -ra args <<<"$e"
  "$LF_SRC/enroll.sh" "${args[@]}" >>"$LF_DIR/logs/enroll.log" 2>&1 &
  enrollers+=($!)
done

# ---- channel: orderer joins through the channel participation API, then the peers --------------
osnadmin channel join --channelID "$LF_CHANNEL" --config-block "$LF_BLOCK" \
  -o "127.0.0.1:$LF_ORDERER_ADMIN_PORT" --ca-file "$LF_ORDERER_TLS_CA" \
  --client-cert "$LF_ORDERER_ADMIN_TLS/client.crt" --client-key "$LF_ORDERER_ADMIN_TLS/client.key" \
  >"$LF_DIR/logs/osnadmin.log" 2>&1 || { cat "$LF_DIR/logs/osnadmin.log" >&2; lf_die "osnadmin channel join failed"; }
joiners=()
for n in "${LF_ORG_NUMS[@]}"; do
  (lf_admin "$n" && lf_retry 30 peer channel join -b "$LF_BLOCK" >"$LF_DIR/logs/join-peer$n.log") &
  joiners+=($!)
done
for p in "${joiners[@]}"; do
  wait "$p" || lf_die "a peer failed to join $LF_CHANNEL (logs in $LF_DIR/logs)"
done
# the single Raft node elects itself within ElectionTick x TickInterval
lf_wait_orderer_leader 10 || lf_die "no Raft leader after 10 s (log: $LF_DIR/logs/orderer.log)"
t_channel=$(lf_since "$t0")

lf_write_env
if ((deploy)); then
  wait "$cc_builder" || { cat "$LF_DIR/logs/cc-build.log" >&2; lf_die "building the chaincode failed"; }
  LEDGERFENCE_CC_BIN=$LF_DIR/bin/ledgerfence-cc.prebuilt "$LF_SRC/deploy.sh"
  rm -f "$LF_DIR/bin/ledgerfence-cc.prebuilt"
fi
# the gateways plan endorsements from gossip membership: wait until it is complete
lf_wait_gossip 60
t_deploy=$(lf_since "$t0")
for p in "${enrollers[@]}"; do
  wait "$p" || { cat "$LF_DIR/logs/enroll.log" >&2; lf_die "enrolling the default identities failed"; }
done
t_all=$(lf_since "$t0")
lf_write_env

lf_log "network up in ${t_all}s (crypto ${t_gen}s, processes listening ${t_start}s, channel joined ${t_channel}s, chaincode and gossip ready ${t_deploy}s)"
lf_rss_table >&2
echo "$LF_DIR/network.env"
