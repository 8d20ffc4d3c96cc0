#!/usr/bin/env bash
# build.sh: build the Hyperledger Fabric and Fabric CA commands pinned by this
# module (go.mod / go.sum beside this script) once per version, and print the
# folder that holds them.
#
#   tools/fabric/build.sh            # build if needed, print the bin dir
#   tools/fabric/build.sh --force    # rebuild even if a build exists
#
# Layout, under ${LEDGERFENCE_CACHE:-$HOME/.cache/ledgerfence}/fabric/<key>/:
#   bin/      peer orderer configtxgen cryptogen osnadmin fabric-ca-server fabric-ca-client
#   config/   Fabric's sampleconfig core.yaml and orderer.yaml (pristine; users edit copies)
#   .complete written last, so an interrupted build is redone
# <key> is a hash of go.sum, so a version change builds into a new folder.
# ${LEDGERFENCE_CACHE}/fabric/bin and .../config are symlinks to the current one.
#
# Progress goes to stderr; stdout carries only the bin dir, so callers can do
#   FABRIC_BIN=$(tools/fabric/build.sh)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache=${LEDGERFENCE_CACHE:-$HOME/.cache/ledgerfence}/fabric
force=0
case ${1:-} in
  "") ;;
  --force) force=1 ;;
  -h|--help) sed -n '2,18p' "${BASH_SOURCE[0]}"; exit 0 ;;
  *) echo "build.sh: unknown argument: $1" >&2; exit 2 ;;
esac

cmds=(peer orderer configtxgen cryptogen osnadmin fabric-ca-server fabric-ca-client)
fabric_pkgs=(peer orderer configtxgen cryptogen osnadmin)
ca_pkgs=(fabric-ca-server fabric-ca-client)

key=$(sha256sum "$here/go.sum" | cut -c1-16)
out=$cache/$key

log() { echo "build.sh: $*" >&2; }

link_current() {
  ln -sfn "$key/bin" "$cache/bin"
  ln -sfn "$key/config" "$cache/config"
}

if [[ $force == 0 && -f $out/.complete ]]; then
  ok=1
  for c in "${cmds[@]}"; do [[ -x $out/bin/$c ]] || ok=0; done
  for f in core.yaml orderer.yaml; do [[ -f $out/config/$f ]] || ok=0; done
  if [[ $ok == 1 ]]; then
    link_current
    echo "$out/bin"
    exit 0
  fi
fi

command -v go >/dev/null || { log "go is not on PATH"; exit 1; }
command -v gcc >/dev/null || { log "gcc is needed (fabric-ca-server uses cgo for sqlite)"; exit 1; }

mkdir -p "$cache"
# One builder at a time per cache folder (tests may call this concurrently).
exec 9>"$cache/.build.lock"
flock 9
if [[ $force == 0 && -f $out/.complete ]]; then
  link_current
  echo "$out/bin"
  exit 0
fi

rm -rf "$out"
mkdir -p "$out/bin" "$out/config"
start=$(date +%s)
log "building Fabric commands into $out/bin (a few minutes the first time)"

cd "$here"
export GOWORK=off GOFLAGS=-mod=readonly
go build -trimpath -o "$out/bin/" \
  "${fabric_pkgs[@]/#/github.com/hyperledger/fabric/cmd/}"
# fabric-ca-server needs cgo (go-sqlite3).
CGO_ENABLED=1 go build -trimpath -o "$out/bin/" \
  "${ca_pkgs[@]/#/github.com/hyperledger/fabric-ca/cmd/}"

fabric_dir=$(go list -m -f '{{.Dir}}' github.com/hyperledger/fabric)
for f in core.yaml orderer.yaml; do
  install -m 0644 "$fabric_dir/sampleconfig/$f" "$out/config/$f"
done

for c in "${cmds[@]}"; do
  [[ -x $out/bin/$c ]] || { log "missing after build: $c"; exit 1; }
done
date -u +%Y-%m-%dT%H:%M:%SZ > "$out/.complete"
link_current
log "built in $(( $(date +%s) - start ))s"
echo "$out/bin"
