#!/usr/bin/env bash
# ledgerfence demonstration: filterd on the embedded ledger, the seed paper's
# five hosts and VM1's regulation registered through the REST API, then Nova's
# external-scheduler webhook asked where VM1 may live-migrate to, and the
# reasons for every host it removed.
#
# Needs Go and curl. Runs in a temporary directory that it removes.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/ledgerfence-demo.XXXXXX")
pid=""
cleanup() {
	if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
		kill -TERM "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	fi
	rm -rf "$work"
}
trap cleanup EXIT

if [[ -t 1 ]]; then bold=$'\033[1m' plain=$'\033[0m'; else bold="" plain=""; fi
step() { printf '\n%s== %s%s\n' "$bold" "$*" "$plain"; }
# show prints a compact JSON document with one array element per line.
show() { sed -e 's/},{/},\n  {/g' -e 's/":\[{/":[\n  {/g'; }

token="demo-admin-$RANDOM$RANDOM"
vm1="6f1c0d3e-8b2a-4c1d-9e7f-0a1b2c3d4e5f"

step "build filterd"
(cd "$root" && go build -o "$work/filterd" ./cmd/filterd)

step "start filterd on the embedded ledger in $work/data"
LEDGERFENCE_ADMIN_TOKEN="$token" "$work/filterd" \
	--listen 127.0.0.1:0 --data "$work/data" --log-level debug \
	>"$work/filterd.log" 2>&1 &
pid=$!
addr=""
for _ in $(seq 200); do
	addr=$(sed -n 's/.*"msg":"filterd serving".*"addr":"\([^"]*\)".*/\1/p' "$work/filterd.log" | head -n1)
	[[ -n "$addr" ]] && break
	kill -0 "$pid" 2>/dev/null || { cat "$work/filterd.log"; exit 1; }
	sleep 0.05
done
[[ -n "$addr" ]] || { echo "filterd did not start"; cat "$work/filterd.log"; exit 1; }
url="http://$addr"
for _ in $(seq 200); do
	curl -fs "$url/readyz" >/dev/null && break
	sleep 0.05
done
echo "filterd serves $url"

step "register the seed's five hosts (Table 4): PUT /v1/hosts/{host}"
put_host() {
	printf '%-4s ' "$1"
	curl -fsS -X PUT "$url/v1/hosts/$1" -H "Authorization: Bearer $token" -d "$2"
}
put_host hm1 '{"country": "JP", "organizations": ["CompanyA", "CompanyB"], "region": "tokyo"}'
put_host hm2 '{"country": "JP", "organizations": ["CompanyA"], "region": "osaka"}'
put_host hm3 '{"country": "DE", "organizations": ["CompanyA"], "region": "frankfurt"}'
put_host hm4 '{"country": "GB", "organizations": ["CompanyC"], "region": "london"}'
put_host hm5 '{"country": "GB", "organizations": ["CompanyB"], "region": "london"}'

step "VM1 may go to JP and GB, run by CompanyA or CompanyB: PUT /v1/regulations/vm:$vm1"
curl -fsS -X PUT "$url/v1/regulations/vm:$vm1" -H "Authorization: Bearer $token" \
	-d '{"countries": ["JP", "GB"], "organizations": ["CompanyA", "CompanyB"]}' | show

step "Nova asks where VM1 may live-migrate: POST /scheduler/nova/external"
cat >"$work/nova.json" <<EOF
{
  "spec": {
    "nova_object.name": "RequestSpec", "nova_object.namespace": "nova", "nova_object.version": "1.14",
    "nova_object.data": {
      "instance_uuid": "$vm1",
      "project_id": "a1b2c3d4e5f60718293a4b5c6d7e8f90",
      "user_id": "0f9e8d7c6b5a49382716a5b4c3d2e1f0",
      "availability_zone": "az-1",
      "num_instances": 1,
      "flavor": {"nova_object.name": "Flavor", "nova_object.data": {"name": "m1.medium", "memory_mb": 4096, "vcpus": 2, "root_gb": 40, "extra_specs": {}}},
      "image": {"nova_object.name": "ImageMeta", "nova_object.data": {"name": "ubuntu-24.04", "disk_format": "qcow2", "properties": {"nova_object.data": {}}}},
      "request_level_params": {"nova_object.name": "RequestLevelParams", "nova_object.data": {"root_required": [], "root_forbidden": [], "same_subtree": []}},
      "network_metadata": {"nova_object.name": "NetworkMetadata", "nova_object.data": {"physnets": [], "tunneled": false}},
      "scheduler_hints": {"_nova_check_type": ["live_migrate"], "source_host": ["hm0"]}
    }
  },
  "context": {"request_id": "req-demo-0001", "global_request_id": "req-demo-global-0001", "project_id": "a1b2c3d4e5f60718293a4b5c6d7e8f90"},
  "hosts": [
    {"host": "hm1", "hypervisor_hostname": "hm1"},
    {"host": "hm2", "hypervisor_hostname": "hm2"},
    {"host": "hm3", "hypervisor_hostname": "hm3"},
    {"host": "hm4", "hypervisor_hostname": "hm4"},
    {"host": "hm5", "hypervisor_hostname": "hm5"}
  ],
  "weights": {"hm1": 1.0, "hm2": 1.0, "hm3": 1.0, "hm4": 1.0, "hm5": 1.0},
  "rebuild": false, "resize": false, "live": true, "vmware": false
}
EOF
curl -fsS -D "$work/headers" -X POST "$url/scheduler/nova/external" \
	-H 'Content-Type: application/json' --data-binary "@$work/nova.json" >"$work/answer"
decision=$(tr -d '\r' <"$work/headers" | sed -n 's/^[Xx]-[Ll]edgerfence-[Dd]ecision: //p')
echo "Nova's answer:  $(cat "$work/answer")"
echo "decision id:    $decision"

step "why: GET /v1/decisions/$decision"
curl -fsS "$url/v1/decisions/$decision" | show

step "what-if for every registered host: POST /v1/check"
curl -fsS -X POST "$url/v1/check" -d "{\"instance_uuid\": \"$vm1\"}" | show

step "who wrote VM1's regulation: GET /v1/history/regulations/vm:$vm1"
curl -fsS "$url/v1/history/regulations/vm:$vm1" | show

step "metrics: hosts denied by reason, webhook requests"
curl -fsS "$url/metrics" | grep -E '^ledgerfence_(hosts_denied_total|webhook_requests_total)' | grep -v ' 0$'

step "filterd's log of the decision"
grep -E '"msg":"(decision|host denied)"' "$work/filterd.log" || true

step "stop filterd"
kill -TERM "$pid"
wait "$pid" || true
pid=""
tail -n 1 "$work/filterd.log"
echo
# The seed's Table 4: the demonstration fails if filterd answers otherwise.
want='{"hosts":["hm1","hm2","hm5"]}'
if [[ "$(cat "$work/answer")" != "$want" ]]; then
	echo "unexpected answer: $(cat "$work/answer") (the seed's Table 4 says $want)"
	exit 1
fi
echo "done: Nova may move VM1 to $want; hm3 is in DE (country_not_allowed), hm4 is run by CompanyC (organization_not_allowed)."
