#!/usr/bin/env bash
# down.sh: stop every process that up.sh, deploy.sh or ctl.sh started for this state folder, and
# only those, then remove the state folder.
#
#   down.sh [--keep]     --keep stops the processes but leaves the folder (logs) in place
#
# A process is ours when its environment carries LEDGERFENCE_FABRIC_OWNER=<state folder>; pid files
# are the first guide, then every process so marked is found, so none survives a lost pid file.
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

keep=0
case ${1:-} in
  "") ;;
  --keep) keep=1 ;;
  *) lf_die "usage: down.sh [--keep]" ;;
esac

if [[ -e $LF_DIR && ! -f $LF_DIR/$LF_MARK ]] && [[ -n $(ls -A "$LF_DIR") ]]; then
  lf_die "$LF_DIR exists but was not made by up.sh; not touching it"
fi

# SIGTERM to all at once, then wait for each (SIGKILL after 10 s)
for c in "${LF_COMPONENTS[@]}"; do
  lf_signal "$c" TERM || true
done
for c in "${LF_COMPONENTS[@]}"; do
  lf_stop "$c"
done
mapfile -t strays < <(lf_stray_pids)
if ((${#strays[@]})); then
  lf_log "stopping stray processes of $LF_DIR: ${strays[*]}"
  kill -s KILL "${strays[@]}" 2>/dev/null || true
  for ((i = 0; i < 100; i++)); do
    mapfile -t strays < <(lf_stray_pids)
    ((${#strays[@]})) || break
    sleep 0.05
  done
  ((${#strays[@]} == 0)) || lf_die "processes of $LF_DIR still alive: ${strays[*]}"
fi

if ((keep == 0)); then
  rm -rf "$LF_DIR"
fi
