# shellcheck shell=bash
# The devstack functions plugin.sh calls, for the plugin test. run_process
# really starts the command (in its own session, pid in $STUB_DIR); the
# others record what they were asked in $STUB_DIR/calls.
STUB_INI="/usr/bin/python3 $(dirname "${BASH_SOURCE[0]}")/ini.py"

_record() { echo "$*" >>"$STUB_DIR/calls"; }
iniset() { $STUB_INI set "$@"; }
iniadd() { $STUB_INI add "$@"; }
iniget() { $STUB_INI get "$@"; }
iniget_multiline() { $STUB_INI getmulti "$@"; }
die() {
	echo "die: ${*:2}" >&2
	exit 1
}
echo_summary() { _record "summary $*"; }
trueorfalse() {
	local default=$1 value=${!2:-$1}
	case "$value" in
	1 | [yY]es | [tT]rue | on) echo True ;;
	0 | [nN]o | [fF]alse | off) echo False ;;
	*) echo "$default" ;;
	esac
}
is_service_enabled() {
	local s
	for s in "$@"; do
		[[ ",$ENABLED_SERVICES," == *",$s,"* ]] && return 0
	done
	return 1
}
enable_service() {
	local s
	for s in "$@"; do
		is_service_enabled "$s" || ENABLED_SERVICES="$ENABLED_SERVICES,$s"
	done
}
pip_install() { _record "pip_install $*"; }
run_process() {
	local name=$1 command=$2
	is_service_enabled "$name" || return 0
	_record "run_process $name $command"
	setsid bash -c "$command" >"$STUB_DIR/$name.log" 2>&1 </dev/null &
	echo $! >"$STUB_DIR/$name.pid"
}
stop_process() {
	local name=$1
	_record "stop_process $name"
	if [[ -f "$STUB_DIR/$name.pid" ]]; then
		kill -TERM -- "-$(cat "$STUB_DIR/$name.pid")" 2>/dev/null || true
		rm -f "$STUB_DIR/$name.pid"
	fi
}
wait_for_service() {
	local timeout=$1 url=$2 end=$((SECONDS + $1))
	until curl -sf "$url" >/dev/null; do
		[[ $SECONDS -lt $end ]] || return 1
		sleep 0.2
	done
	[[ $timeout -gt 0 ]]
}
