# Shared helpers for the end-to-end scripts (sourced, not a test itself).
set -u
: "${MOEBENCH:?path of the moebench binary}" "${SRC:?source folder}" "${WORK:?scratch folder}"
T=$(basename "$0" .sh)
OUT="$WORK/$T"
rm -rf "$OUT"
mkdir -p "$OUT"
pass=0
fail=0
ok() { echo "ok - $*"; pass=$((pass + 1)); }
bad() { echo "FAIL - $*"; fail=$((fail + 1)); }
check() { # check DESCRIPTION COMMAND...
  local d=$1
  shift
  if "$@"; then ok "$d"; else bad "$d"; fi
}
finish() {
  echo "$pass passed, $fail failed"
  [ "$fail" -eq 0 ]
  exit $?
}
# newest run.json under a results folder
run_json() { ls -1d "$1"/2*/ 2>/dev/null | tail -n 1 | sed 's|/$|/run.json|'; }
# jq-like queries through python3 (jq is not a dependency)
jget() { python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))" "$@"; }
# a process that exists and is not a zombie (a killed child of a dead parent waits for init to reap it)
is_alive() { [ -r "/proc/$1/status" ] && ! grep -q '^State:.*Z' "/proc/$1/status" 2>/dev/null; }
# true when no pid the run recorded is still alive
none_alive() {
  local p
  for p in $(jget "$1" "' '.join(str(x) for c in d['cases'] for x in c['pids'])"); do
    is_alive "$p" && return 1
  done
  return 0
}
