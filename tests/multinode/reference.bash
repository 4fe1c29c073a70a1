# The single-host answer the multinode tests hold their remote runs to (sourced by them): the fork
# launcher's run of every shipped host scenario, with the oracle on, made once and kept in
# $WORK/multinode_reference under a key of the binary, the scenario files and the options. The two tests
# (and e2e_multinode_reference, their CTest fixture) share it instead of making it once each; a lock makes
# a test that starts while another is making it wait for that run instead of repeating it.
#
# Why the remote runs may then leave the oracle off: every case here passed the oracle (the fork run must
# exit 0 with every case "ok"), each case's digests hash every layer's merged output bit for bit
# (verify.c), so a remote case with the same digests has the same, verified, outputs. What the oracle does
# not see still runs remotely with --check off: the byte accounting, TP-rank agreement, the repeat digest.

# every shipped scenario the host backend runs (the GPU benchmarks need a GPU)
MN_SCEN=()
for f in "$SRC"/scenarios/*.ini; do
  case $(basename "$f") in bench-gpu.ini | bench-multigpu.ini) ;; *) MN_SCEN+=("$f") ;; esac
done
MN_QUICK=(--iters 1 --warmup 0 --backend host -q)
MN_REF_DIR="$WORK/multinode_reference"

# mn_reference [--fresh]: sets MN_REF (the reference run.json), making the run unless one with the same key
# exists (--fresh: always make it); returns non-zero, with the reason on stdout, when the fork run fails
mn_reference() {
  local key have="" rc=0
  key=$( (sha256sum "$MOEBENCH" "${MN_SCEN[@]}" | cut -d' ' -f1; echo "${MN_QUICK[*]}") | sha256sum | cut -c1-16)
  mkdir -p "$MN_REF_DIR"
  exec 9>"$MN_REF_DIR.lock"
  flock 9
  [ "${1:-}" != --fresh ] && have=$(cat "$MN_REF_DIR/key" 2>/dev/null)
  if [ "$have" != "$key" ]; then
    rm -rf "${MN_REF_DIR:?}"/*
    "$MOEBENCH" run "${MN_SCEN[@]}" "${MN_QUICK[@]}" --check full --out "$MN_REF_DIR/run" >"$MN_REF_DIR/run.out" 2>&1
    rc=$?
    MN_REF=$(run_json "$MN_REF_DIR/run")
    if [ "$rc" -eq 0 ] && [ "$(jget "$MN_REF" "all(c['verdict'] == 'ok' for c in d['cases'])")" = True ]; then
      echo "$key" >"$MN_REF_DIR/key"
    else
      echo "the fork launcher's reference run failed (exit $rc): $(tail -n 3 "$MN_REF_DIR/run.out")"
      rc=1
    fi
  fi
  MN_REF=$(run_json "$MN_REF_DIR/run")
  exec 9>&-
  return $rc
}
