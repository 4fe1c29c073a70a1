#!/bin/sh
# An "ssh" for mpirun that stays on this machine: AGENT [OPTIONS] HOST CMD... runs CMD here with the
# hostname HOST, in a UTS namespace of its own (two emulated nodes; docs/MULTINODE.md). Hydra passes
# options before the host: they are skipped.
while [ $# -gt 0 ]; do
	case $1 in
	-*) shift ;;
	*) break ;;
	esac
done
host=$1
shift
exec unshare --uts sh -c 'hostname "$0" && exec sh -c "$*"' "$host" "$@"
