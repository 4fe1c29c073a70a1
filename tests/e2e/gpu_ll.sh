#!/usr/bin/env bash
# On a GPU host: every shipped scenario with strategy = ll on the cuda backend (ranks sharing the GPU through
# ipc), then with graph = on where a file's cases can be captured (replicate partition); verdicts ok,
# invariants passed (ll == a2a, graph == eager where both ran). nccl is refused for ll (it maps no peer memory).
# Exits 77 where there is no GPU or no CUDA backend.
. "$(dirname "$0")/lib.bash"
"$MOEBENCH" run "$SRC/scenarios/smoke.ini" --only single --backend cuda --out "$OUT/probe" -q >"$OUT/probe.out" 2>&1
if [ $? -eq 77 ]; then
  echo "SKIP: no GPU or no CUDA backend here"
  exit 77
fi
export NCCL_NVLS_ENABLE=0
for f in "$SRC"/scenarios/*.ini; do
  n=$(basename "$f" .ini)
  case $n in bench-*) continue ;; esac
  for g in off on; do
    set -- --backend cuda --transport ipc --set strategy=ll --set graph=$g --iters 2 --warmup 1
    if ! "$MOEBENCH" list "$f" "$@" >"$OUT/$n-$g.list" 2>&1; then
      echo "skip - $n (graph = $g): $(tail -n 1 "$OUT/$n-$g.list")"
      continue
    fi
    "$MOEBENCH" run "$f" "$@" --out "$OUT/$n-$g" -q >"$OUT/$n-$g.out" 2>&1
    rc=$?
    J=$(run_json "$OUT/$n-$g")
    check "$n (cuda, ll, graph = $g): exit 0 (got $rc)" test "$rc" -eq 0
    check "$n (cuda, ll, graph = $g): every case ok" test "$(jget "$J" \
      "len(d['cases'])>0 and all(c['verdict']=='ok' for c in d['cases'])")" = True
    check "$n (cuda, ll, graph = $g): invariants passed" test "$(jget "$J" "all(i['passed'] for i in d['invariants'])")" = True
    [ "$rc" -eq 0 ] || sed -n '1,30p' "$OUT/$n-$g.out"
  done
done
"$MOEBENCH" run "$SRC/scenarios/smoke.ini" --only single --backend cuda --transport nccl --set strategy=ll \
  --out "$OUT/nccl" >"$OUT/nccl.out" 2>&1
rc=$?
check "ll through nccl: refused, exit 2 (got $rc)" test "$rc" -eq 2
finish
