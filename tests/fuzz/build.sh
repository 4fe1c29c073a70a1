#!/usr/bin/env bash
# Builds the libFuzzer targets (scenario parser, trace reader) with clang into $1 (default build-fuzz/).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/../.." && pwd)
out=${1:-build-fuzz}
mkdir -p "$out"
CC=${CC:-clang}
inih=$(pkg-config --cflags --libs inih 2>/dev/null || echo -linih)
# shellcheck disable=SC2054 # the commas belong to -fsanitize
flags=(-std=c17 -D_GNU_SOURCE -g -O1 -fno-omit-frame-pointer -fsanitize=fuzzer,address,undefined
       -fno-sanitize-recover=undefined -ffp-contract=off $(for d in "$src"/harness/*/; do printf -- "-I%s " "$d"; done) -I"$src/kernels"
       -DMOE_VERSION='"fuzz"' -DMOE_GIT_COMMIT='"fuzz"' "-DMOE_SOURCE_DIR=\"$src\"")
lib=("$src/harness/scenario/scenario.c" "$src/harness/scenario/params.c" "$src/harness/scenario/workload.c" "$src/harness/common/util.c" "$src/harness/common/outfile.c" "$here/stubs.c")
for t in scenario trace; do
	# shellcheck disable=SC2086
	"$CC" "${flags[@]}" "$here/fuzz_$t.c" "${lib[@]}" $inih -lm -o "$out/fuzz_$t"
done
echo "built $out/fuzz_scenario $out/fuzz_trace"
