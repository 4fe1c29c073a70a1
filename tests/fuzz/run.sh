#!/usr/bin/env bash
# Short fuzzing pass: builds the libFuzzer targets and runs each for N executions on a copy of its seed corpus.
# Usage: run.sh RUNS [BUILD_DIR]. Exits 77 (skip) when clang's libFuzzer is unavailable.
set -uo pipefail
runs=${1:-20000}
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/moebench-fuzz.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
out=${2:-$tmp/bin}
CC=${CC:-clang}

# libFuzzer present and working?
if ! command -v "$CC" >/dev/null 2>&1; then
	echo "SKIP: $CC not found (libFuzzer needs clang)"
	exit 77
fi
printf '#include <stddef.h>\n#include <stdint.h>\nint LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) { (void)d; (void)n; return 0; }\n' >"$tmp/probe.c"
if ! "$CC" -fsanitize=fuzzer,address,undefined "$tmp/probe.c" -o "$tmp/probe" >"$tmp/probe.log" 2>&1 ||
	! "$tmp/probe" -runs=1 >>"$tmp/probe.log" 2>&1; then
	echo "SKIP: clang libFuzzer/sanitizer runtime unavailable (Debian: libclang-rt-14-dev)"
	sed 's/^/  /' "$tmp/probe.log" | tail -5
	exit 77
fi

if ! bash "$here/build.sh" "$out" >"$tmp/build.log" 2>&1; then
	cat "$tmp/build.log"
	echo "FAIL: building the fuzzers"
	exit 1
fi

pass=0 fail=0
for t in scenario trace; do
	mkdir -p "$tmp/corpus-$t" "$tmp/crash-$t"
	cp "$here/corpus/$t"/* "$tmp/corpus-$t/"
	log=$tmp/$t.log
	start=$(date +%s.%N)
	(cd "$tmp" && "$out/fuzz_$t" -runs="$runs" -max_len=4096 -timeout=30 -rss_limit_mb=3072 -seed=1 \
		-artifact_prefix="$tmp/crash-$t/" -print_final_stats=1 "$tmp/corpus-$t") >"$log" 2>&1
	rc=$?
	end=$(date +%s.%N)
	execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
	eps=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
	wall=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.1f", b - a }')
	if [ -z "$eps" ] || [ "$eps" = 0 ]; then # libFuzzer rounds short runs down to 0
		eps=$(awk -v n="${execs:-0}" -v a="$start" -v b="$end" 'BEGIN { printf "%.0f", n / (b - a) }')
	fi
	if [ "$rc" -eq 0 ]; then
		pass=$((pass + 1))
		echo "PASS fuzz_$t: ${execs:-?} executions, ${eps:-?} exec/s, ${wall} s"
	else
		fail=$((fail + 1))
		echo "FAIL fuzz_$t (exit $rc): ${execs:-?} executions, ${wall} s"
		tail -40 "$log"
		for a in "$tmp/crash-$t"/*; do
			[ -e "$a" ] || continue
			echo "  reproducer (base64) $(basename "$a"):"
			base64 -w0 "$a" | head -c 8192
			echo
		done
	fi
done
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
