#!/usr/bin/env bash
# Planted bugs (issue 10 item 8): applies each tests/mutants/NN-name.patch, one at a time, to a scratch copy
# of the tree, rebuilds there (CUDA off, one build folder reused), runs the shipped host scenarios and a set
# of e2e tests, and prints per bug whether it was caught and by what. Exit 0 only when every bug is caught.
set -u

usage() {
	cat <<'EOF'
usage: scripts/mutants.sh [--list] [--check] [--only PATTERN] [--jobs N] [--full] [--e2e REGEX|all|none]
                          [--shipped-iters] [--no-baseline] [--work DIR] [--keep]
  --list           print the planted bugs (name and what it does) and exit
  --check          only check that every patch applies cleanly to this tree (patch --dry-run); exit 1 if any
                   is stale. No copy, no build.
  --only PATTERN   only the bugs whose file name contains PATTERN (a shell glob also works)
  --jobs N         build and ctest parallelism (default 2)
  --full           run every check for every bug (default: stop at the first check that catches it)
  --e2e REGEX      e2e tests to run after the scenarios, as a ctest -R regex on the name without its
                   e2e_ prefix (default smoke|mismatch|dump|preflight: the quick ones that run the data path; scenarios
                   is left out because this script runs every scenario itself); 'all' = ctest -L e2e; 'none' = skip
  --shipped-iters  run the scenarios with their own iters/warmup (default: --iters 2 --warmup 1, which
                   keeps a warm-up and two timed iterations, so stale-buffer bugs still show)
  --no-baseline    skip the run on the unmutated tree (by default it must pass, or nothing is judged)
  --work DIR       scratch folder (default: a new mktemp -d; removed at the end unless --keep)
Each bug is reported as caught (with the first catching check, or all with --full), missed, or stale
(the patch no longer applies or the mutated tree does not build: not counted as caught).
EOF
}

SRC=$(cd "$(dirname "$0")/.." && pwd)
MUT=${MOE_MUTANTS_DIR:-$SRC/tests/mutants} # the override is for the e2e test of this script
ONLY="" JOBS=2 LIST=0 CHECK=0 FULL=0 E2E="smoke|mismatch|dump|preflight" ITERS=(--iters 2 --warmup 1) BASELINE=1 WORK="" KEEP=0
while [ $# -gt 0 ]; do
	case $1 in
	--list) LIST=1 ;;
	--check) CHECK=1 ;;
	--only) ONLY=${2:?--only needs a pattern}; shift ;;
	--jobs) JOBS=${2:?--jobs needs a number}; shift ;;
	--full) FULL=1 ;;
	--e2e) E2E=${2:?--e2e needs a regex, all or none}; shift ;;
	--shipped-iters) ITERS=() ;;
	--no-baseline) BASELINE=0 ;;
	--work) WORK=${2:?--work needs a folder}; shift ;;
	--keep) KEEP=1 ;;
	-h | --help) usage; exit 0 ;;
	*) echo "mutants.sh: unknown option '$1'" >&2; usage >&2; exit 2 ;;
	esac
	shift
done
case $JOBS in '' | *[!0-9]*) echo "mutants.sh: --jobs needs a positive number" >&2; exit 2 ;; esac

patches=()
for p in "$MUT"/*.patch; do
	[ -e "$p" ] || continue
	n=$(basename "$p" .patch)
	if [ -n "$ONLY" ]; then
		case $n in *$ONLY*) ;; *) continue ;; esac
	fi
	patches+=("$p")
done
if [ ${#patches[@]} -eq 0 ]; then
	echo "mutants.sh: no planted bugs under $MUT${ONLY:+ matching '$ONLY'}" >&2
	exit 2
fi
what() { sed -n 's/^# what: //p' "$1" | head -n 1; }
files_of() { sed -n 's|^+++ b/\([^[:space:]]*\).*|\1|p' "$1"; }
apply() { patch -p1 -s -F2 --no-backup-if-mismatch -r - -d "$1" "${@:3}" <"$2" >/dev/null 2>&1; }

if [ $LIST -eq 1 ]; then
	for p in "${patches[@]}"; do printf '%-34s %s\n' "$(basename "$p" .patch)" "$(what "$p")"; done
	exit 0
fi
if [ $CHECK -eq 1 ]; then
	stale=0
	for p in "${patches[@]}"; do
		n=$(basename "$p" .patch)
		if [ -z "$(what "$p")" ]; then
			echo "$n: no '# what:' line"; stale=$((stale + 1))
		elif apply "$SRC" "$p" --dry-run; then
			echo "$n: applies"
		else
			echo "$n: STALE (does not apply to this tree)"; stale=$((stale + 1))
		fi
	done
	echo "${#patches[@]} planted bugs, $stale stale"
	[ $stale -eq 0 ]
	exit $?
fi

renice -n 10 -p $$ >/dev/null 2>&1 || true # share the cores politely: every child inherits it
if [ -z "$WORK" ]; then
	WORK=$(mktemp -d "${TMPDIR:-/tmp}/moe-mutants.XXXXXX") || exit 2
else
	mkdir -p "$WORK" || exit 2
fi
[ $KEEP -eq 1 ] || trap 'rm -rf "$WORK"' EXIT
TREE="$WORK/src" ORIG="$WORK/orig" BUILD="$WORK/build" RUNS="$WORK/runs"
rm -rf "$TREE" "$ORIG" "$RUNS"
mkdir -p "$TREE" "$ORIG" "$RUNS"

# The caller's tracked and unignored files as they are now (uncommitted edits included), never the caller's tree.
copy_tree() {
	if git -C "$SRC" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
		(cd "$SRC" && git ls-files -z --cached --others --exclude-standard |
			while IFS= read -r -d '' f; do [ -f "$f" ] && printf '%s\0' "$f"; done |
			tar --null -T - -cf -) | tar -xf - -C "$1"
	else
		(cd "$SRC" && tar --exclude='./build*' --exclude='./results/*' -cf - .) | tar -xf - -C "$1"
	fi
}
copy_tree "$TREE" && copy_tree "$ORIG" || { echo "mutants.sh: cannot copy the tree" >&2; exit 2; }
echo "# scratch copy: $WORK; $(nproc) cores; $(date -u '+%Y-%m-%d %H:%M UTC')"

build() { cmake --build "$BUILD" --target moebench -j "$JOBS" >"$1" 2>&1; }
if ! cmake -S "$TREE" -B "$BUILD" -DMOE_WITH_CUDA=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo >"$WORK/configure.log" 2>&1 ||
	! build "$WORK/build.log"; then
	echo "mutants.sh: the unmutated tree does not configure or build (see $WORK/*.log)" >&2
	KEEP=1
	exit 2
fi

# Host scenarios: every scenarios/*.ini whose backend is not cuda; the bench-* files (real widths, slow on
# the host) last, so that a first catch comes quickly.
scenarios=()
for f in $(ls -1 "$TREE"/scenarios/*.ini | grep -v '/bench-') $(ls -1 "$TREE"/scenarios/bench-*.ini 2>/dev/null); do
	grep -qE '^[[:space:]]*backend[[:space:]]*=[[:space:]]*cuda' "$f" && continue
	scenarios+=("$f")
done

# One scenario: prints what caught the bug (one line each), nothing when it passed.
check_scenario() { # FILE OUTDIR
	local f=$1 out=$2 n rc
	n=$(basename "$f" .ini)
	# a case of the shipped files takes seconds at --iters 2 even on 2 cores: 60 s a case is a hang (a planted
	# bug that hangs four cases then costs 4 minutes, not the 15 that 300 s cost)
	timeout 900 "$BUILD/moebench" run "$f" --out "$out" -q --timeout "${MOE_MUTANT_CASE_TIMEOUT:-60}" "${ITERS[@]}" >"$out.log" 2>&1
	rc=$?
	python3 - "$out" "$n" "$rc" <<'PY'
import glob, json, sys
out, n, rc = sys.argv[1], sys.argv[2], int(sys.argv[3])
runs = sorted(glob.glob(out + '/2*/run.json'))
if not runs:
    print(f'scenario {n}: exit {rc}, no run.json')
    sys.exit()
try:
    d = json.load(open(runs[-1]))
except ValueError as e:
    print(f'scenario {n}: exit {rc}, unreadable run.json ({e})')
    sys.exit()
cases = d.get('cases', [])
bad = [c for c in cases if c.get('verdict') != 'ok']
if bad:
    kinds = sorted(set(str(c.get('verdict')) for c in bad))
    names = ', '.join(str(c.get('name')) for c in bad[:2]) + (', ...' if len(bad) > 2 else '')
    print(f"scenario {n}: {len(bad)}/{len(cases)} cases {'/'.join(kinds)} ({names})")
failed = {}
for i in d.get('invariants', []):
    if not i.get('passed'):
        failed.setdefault(str(i.get('invariant')), []).append(' == '.join(i.get('cases', [])[:2]))
for name, where in failed.items():
    print(f"invariant {name} x{len(where)} ({n}: {where[0]}{', ...' if len(where) > 1 else ''})")
if rc != 0 and not bad:
    print(f'scenario {n}: exit {rc}')
PY
}

check_e2e() { # OUTDIR
	local sel=()
	case $E2E in
	none) return ;;
	all) sel=(-L e2e) ;;
	*) sel=(-L e2e -R "^e2e_($E2E)\$") ;;
	esac
	(cd "$BUILD" && timeout 1800 ctest "${sel[@]}" -j "$JOBS" --timeout 600 >"$1.e2e.log" 2>&1)
	sed -n 's/^[[:space:]]*[0-9]* - \(e2e_[A-Za-z0-9_]*\) (\(.*\))$/e2e test \1 (\2)/p' "$1.e2e.log"
}

# All checks against the current build; one line per catch. Stops at the first catching check unless --full.
run_checks() { # LABEL
	local out="$RUNS/$1" f hits
	mkdir -p "$out"
	for f in "${scenarios[@]}"; do
		hits=$(check_scenario "$f" "$out/$(basename "$f" .ini)")
		[ -n "$hits" ] && echo "$hits" && [ $FULL -eq 0 ] && return
	done
	check_e2e "$out"
}

if [ $BASELINE -eq 1 ]; then
	base=$(run_checks baseline)
	if [ -n "$base" ]; then
		echo "mutants.sh: the unmutated tree already fails, so no bug can be judged:" >&2
		echo "$base" | sed 's/^/  /' >&2
		KEEP=1
		exit 2
	fi
	echo "# baseline: the unmutated tree passes every check"
fi

caught=0 missed=0 stale=0
missed_list="" stale_list=""
t_all=$(date +%s)
for p in "${patches[@]}"; do
	n=$(basename "$p" .patch)
	t0=$(date +%s)
	files=$(files_of "$p")
	status="" detail=""
	if ! apply "$TREE" "$p"; then
		status=stale detail="patch does not apply"
	elif ! build "$RUNS/$n.build.log"; then
		status=stale detail="does not build ($(grep -m1 -o 'error: .*' "$RUNS/$n.build.log" | cut -c1-80))"
	else
		hits=$(run_checks "$n")
		if [ -n "$hits" ]; then
			status=caught detail=$(echo "$hits" | paste -sd ';' | sed 's/;/; /g')
		else
			status=missed detail="every check passed"
		fi
	fi
	for f in $files; do cp "$ORIG/$f" "$TREE/$f"; done # revert (a fresh mtime: the next build recompiles it)
	case $status in
	caught) caught=$((caught + 1)) ;;
	missed) missed=$((missed + 1)) missed_list="$missed_list $n" ;;
	stale) stale=$((stale + 1)) stale_list="$stale_list $n" ;;
	esac
	printf '%-34s %-6s %4ss  %s\n' "$n" "$status" "$(($(date +%s) - t0))" "$detail"
done
total=${#patches[@]}
echo "caught $caught of $total ($((100 * caught / total))%), missed $missed, stale $stale; $(($(date +%s) - t_all)) s"
[ -n "$missed_list" ] && echo "missed:$missed_list"
[ -n "$stale_list" ] && echo "stale:$stale_list"
[ "$caught" -eq "$total" ]
