#!/usr/bin/env bash
# Every malformed scenario under tests/bad/ must be refused with exit 2 and the error its first line names.
set -u

: "${MOEBENCH:?MOEBENCH must name the moebench binary}"
: "${SRC:?SRC must name the source folder}"
: "${WORK:?WORK must name a scratch folder}"
mkdir -p "$WORK"

pass=0
fail=0
err="$WORK/bad_inputs.stderr"

ok() { echo "ok   $1"; pass=$((pass + 1)); }
bad() { echo "FAIL $1: $2"; fail=$((fail + 1)); }

# expect_fail NAME WANT_SUBSTRING CMD...: CMD must exit 2 with WANT_SUBSTRING on stderr.
expect_fail() {
	local name=$1 want=$2
	shift 2
	"$@" >/dev/null 2>"$err"
	local rc=$?
	if [ "$rc" -ne 2 ]; then
		bad "$name" "exit $rc, expected 2; stderr: $(head -c 400 "$err")"
	elif ! grep -qF -- "$want" "$err"; then
		bad "$name" "stderr lacks '$want'; got: $(head -c 400 "$err")"
	else
		ok "$name"
	fi
}

shopt -s nullglob
files=("$SRC"/tests/bad/*.ini)
if [ "${#files[@]}" -eq 0 ]; then
	echo "no files under $SRC/tests/bad"
	exit 1
fi
for f in "${files[@]}"; do
	name=$(basename "$f")
	first=$(head -n 1 "$f")
	case "$first" in
	"; expect: "*) want=${first#; expect: } ;;
	*) bad "$name" "first line is not '; expect: <message>'"; continue ;;
	esac
	if [ -z "$want" ]; then
		bad "$name" "empty expect line"
		continue
	fi
	expect_fail "$name" "$want" "$MOEBENCH" list "$f"
done

expect_fail "missing file" "cannot open" "$MOEBENCH" list "$WORK/no-such-scenario.ini"
expect_fail "run --set unknown key" "unknown key 'nosuchkey'" "$MOEBENCH" run --set nosuchkey=1
expect_fail "unknown command" "frobnicate" "$MOEBENCH" frobnicate

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
