#!/bin/bash
# Install, from Debian's own packages, what the Nova integration tests need.
#
#   install.sh l1      python3-nova only (Nova's filter machinery, Level 1)
#   install.sh cloud   everything the mini cloud needs (Level 2), python3-nova included
#
# Idempotent: a package already installed is not asked for again, and nothing
# is downloaded beyond apt. Package maintainer scripts must not start services
# or configure databases: a policy-rc.d that refuses every start is in place
# while apt runs, and debconf is told not to touch databases or endpoints.
set -euo pipefail

level=${1:-l1}
APT=(apt-get -o DPkg::Lock::Timeout=900)
export DEBIAN_FRONTEND=noninteractive

L1_PKGS=(python3-nova)
CLOUD_PKGS=(python3-nova mariadb-server rabbitmq-server keystone placement-api
	nova-api nova-conductor nova-scheduler python3-openstackclient
	python3-osc-placement uwsgi-plugin-python3 python3-pymysql glance-api curl)

case "$level" in
l1) want=("${L1_PKGS[@]}") ;;
cloud | all) want=("${CLOUD_PKGS[@]}") ;;
*)
	echo "usage: $0 l1|cloud" >&2
	exit 2
	;;
esac

missing=()
for p in "${want[@]}"; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$'; then
		missing+=("$p")
	fi
done
if [ ${#missing[@]} -eq 0 ]; then
	echo "install.sh $level: all packages present"
	exit 0
fi
echo "install.sh $level: installing ${missing[*]}"

# Keep maintainer scripts from starting services (no init system here, and
# the tests start every service themselves). Restore any policy-rc.d that
# was there before.
policy=/usr/sbin/policy-rc.d
saved=""
if [ -e "$policy" ]; then
	saved=$(mktemp)
	cp -p "$policy" "$saved"
fi
restore_policy() {
	if [ -n "$saved" ]; then
		mv -f "$saved" "$policy"
	else
		rm -f "$policy"
	fi
}
trap restore_policy EXIT
printf '#!/bin/sh\nexit 101\n' >"$policy"
chmod 0755 "$policy"

debconf-set-selections <<'SEED'
keystone keystone/configure_db boolean false
keystone keystone/dbconfig-install boolean false
keystone keystone/create-admin-tenant boolean false
keystone keystone/register-endpoint boolean false
nova-common nova/configure_db boolean false
nova-common nova-common/dbconfig-install boolean false
nova-api nova/register-endpoint boolean false
nova-api nova-api/dbconfig-install boolean false
placement-common placement/configure_db boolean false
placement-common placement-common/dbconfig-install boolean false
placement-api placement/register-endpoint boolean false
glance-common glance/configure_db boolean false
glance-common glance-common/dbconfig-install boolean false
glance-api glance/register-endpoint boolean false
SEED

"${APT[@]}" update
"${APT[@]}" install -y --no-install-recommends "${missing[@]}"
echo "install.sh $level: done"
