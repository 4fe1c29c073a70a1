#!/usr/bin/env bash
# A battery of hostile inputs and machine faults against a built moebench, from outside the test suite:
# one line per input with what happened, then the counts that docs/RELIABILITY.md records.
#   bash scripts/battery.sh [MOEBENCH] [WORKDIR]
# Crash: killed by SIGSEGV/SIGABRT/SIGBUS/SIGFPE/SIGILL. Hang: still running after the time limit. Shell reach:
# a marker file that only a shell running an embedded command would create. Lost: an output that a command
# reported as written (exit 0) but that is missing, empty or not whole, or an OK printed for results not saved.
# Handled: none of those, the exit code the one expected, and a line on stderr for any non-zero exit.
set -u
M=$(realpath "${1:-build/moebench}")
W=${2:-$(mktemp -d /tmp/moebench-battery.XXXXXX)}
SRC=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$W" && cd "$W" || exit 2
tried=0 handled=0 crashes=0 hangs=0 shells=0 lost=0
declare -A cat_tried cat_handled
MARK="$W/PWNED"

# t CATEGORY NAME EXPECTED_EXIT_REGEX LIMIT_S CMD... ; $LOSTCHK (a command) may flag a lost result
t() {
  local cat=$1 name=$2 want=$3 lim=$4
  shift 4
  rm -f "$MARK"
  timeout -s KILL "$lim" "$@" >out.txt 2>err.txt </dev/null
  local rc=$? verdict=handled
  if [ "$rc" -eq 137 ]; then
    verdict=HANG hangs=$((hangs + 1))
  elif [ "$rc" -ge 132 ] && [ "$rc" -le 139 ]; then
    verdict=CRASH crashes=$((crashes + 1))
  elif [ -e "$MARK" ]; then
    verdict=SHELL shells=$((shells + 1))
  elif [ -n "${LOSTCHK:-}" ] && ! eval "$LOSTCHK"; then
    verdict=LOST lost=$((lost + 1))
  elif ! [[ $rc =~ ^($want)$ ]]; then
    verdict="unexpected exit"
  elif [ "$rc" -ne 0 ] && ! [ -s err.txt ] && ! grep -q 'error\|FAILED' out.txt; then
    verdict="silent failure"
  fi
  tried=$((tried + 1))
  cat_tried[$cat]=$((${cat_tried[$cat]:-0} + 1))
  if [ "$verdict" = handled ]; then
    handled=$((handled + 1))
    cat_handled[$cat]=$((${cat_handled[$cat]:-0} + 1))
  fi
  printf '%-9s %-44s exit %-3s %s: %s\n' "$cat" "$name" "$rc" "$verdict" "$(head -c 150 err.txt | tr '\n' ' ')"
  LOSTCHK=
}
G='[global]
hidden = 16
ffn = 32
experts = 4
topk = 2
tokens = 8
iters = 3
warmup = 0
expert = scale
'
sc() { printf '%s%s' "$G" "$2" >"$1"; }

# ---- scenario files ----
: >empty.ini
head -c 4096 /dev/urandom >binary.ini
python3 -c "print('[a]\ndp = ' + '1' * 1000000)" >hugeline.ini
head -c 10000000 /dev/zero | tr '\0' 'x' >nonewline.ini
printf '[a]\ndp = 1\0\n' >nul.ini
mkfifo fifo.ini
ln -sf loopB loopA
ln -sf loopA loopB
sc badutf.ini $'[bad\xff\xfe]\ndp = 1\n'
sc name49.ini "[$(printf 'n%.0s' $(seq 49))]"$'\ndp = 1\n'
sc name50.ini "[$(printf 'n%.0s' $(seq 50))]"$'\ndp = 1\n'
printf 'dp = 1\n[a]\n' >outside.ini
sc dupsec.ini $'[a]\ndp = 1\n[a]\ndp = 2\n'
sc dupkey.ini $'[a]\ndp = 1\ndp = 2\n'
sc emptyval.ini $'[a]\ndp =\n'
sc unknown.ini $'[a]\nfrobnicate = 1\n'
sc sweep.ini $'[a]\ndp = 1||2\n'
sc crlf.ini $'[a]\r\ndp = 1\r\n'
printf '\xef\xbb\xbf%s[a]\ndp = 1\n' "$G" >bom.ini
sc onlyglobal.ini ''
sc megasweep.ini $'[a]\nseed = 1|2|3|4|5|6|7|8|9|10\ntokens = 1|2|3|4|5|6|7|8|9|10\nlayers = 1|2|3|4|5|6|7|8|9|10\nhidden = 16|32|48|64|80|96|112|128|144|160\nffn = 8|16|24|32|40|48|56|64|72|80|88|96\n'
sc negtok.ini $'[a]\ntokens = -5\n'
sc hugetok.ini $'[a]\ntokens = 1000000000000\n'
sc hidden0.ini $'[a]\nhidden = 0\n'
sc ediv.ini $'[a]\nexperts = 6\ndp = 4\n'
sc topk.ini $'[a]\ntopk = 9\n'
sc shellname.ini $'[$(touch PWNED)`touch PWNED`;touch PWNED]\ndp = 1\n'
sc quotes.ini $'[q"u\'o te\ts]\ndp = 1\n'
python3 -c "
with open('big.ini','w') as f:
    f.write('''$G''')
    for i in range(100000): f.write('[c%d]\ntokens = %d\n' % (i, i % 50 + 1))"
for f in empty binary hugeline nonewline nul; do t scenario "$f.ini" 2 30 "$M" list "$f.ini"; done
t scenario "FIFO as scenario" 2 10 "$M" list fifo.ini
t scenario "/dev/zero as scenario" 2 10 "$M" list /dev/zero
t scenario "/dev/null as scenario" 2 10 "$M" list /dev/null
t scenario "a folder as scenario" 2 10 "$M" list /tmp
t scenario "symlink loop" 2 10 "$M" list loopA
t scenario "missing file" 2 10 "$M" list nosuch.ini
t scenario "bad UTF-8 section name (run)" 0 60 "$M" run badutf.ini --out r -q
t scenario "section name of 49 bytes" 0 10 "$M" list name49.ini
t scenario "section name of 50 bytes" 2 10 "$M" list name50.ini
for f in outside dupsec dupkey emptyval unknown sweep; do t scenario "$f.ini" 2 10 "$M" list "$f.ini"; done
for f in crlf bom; do t scenario "$f.ini" 0 10 "$M" list "$f.ini"; done
t scenario "only [global]" 2 10 "$M" list onlyglobal.ini
t scenario "sweep of 120000 cases" 2 30 "$M" list megasweep.ini
for f in negtok hugetok hidden0 ediv topk; do t scenario "$f.ini" 2 30 "$M" run "$f.ini" --out r -q; done
t scenario "shell text in a case name (run+plot)" 0 60 sh -c "'$M' run shellname.ini --out sh -q && '$M' plot sh/latest"
t scenario "quotes and tab in a case name" 0 60 sh -c "'$M' run quotes.ini --out qu -q && '$M' plot qu/latest"
t scenario "100k sections (60 s limit; CPU time below)" 0 60 "$M" list big.ini
TIMEFORMAT="%U user + %S sys"; echo "# 100k sections: $( { time "$M" list big.ini >/dev/null; } 2>&1 )"

# ---- trace files ----
mkdir -p tr
mkfifo tr/fifo
: >tr/empty.txt
head -c 4096 /dev/urandom >tr/binary.txt
printf '0 1\n9999 1\n' >tr/range.txt
python3 -c "print(' '.join(['1'] * 40000))" >tr/longline.txt
mkdir -p tr/dir
for tr in /dev/zero fifo empty.txt binary.txt range.txt longline.txt dir nosuch.txt ../../../../etc/passwd; do
  sc "tr/t.ini" "[a]
routing = trace:$tr
"
  t trace "trace:$tr" 2 20 "$M" run tr/t.ini --out r -q
done

# ---- run folders and files given to compare, plot, report ----
sc good.ini $'[a]\ndp = 1\n[b]\ndp = 2\n'
"$M" run good.ini --out ok -q
GOOD=$(ls -1d ok/2* | head -n 1)
mkdir -p bad/empty bad/bin bad/arr bad/nocase
: >bad/empty/run.json
head -c 4096 /dev/urandom >bad/bin/run.json
echo '[]' >bad/arr/run.json
echo '{"schema":"moebench.run/1"}' >bad/nocase/run.json
for b in empty bin arr nocase; do t runjson "compare with $b run.json" '[1-9]' 20 "$M" compare "$GOOD" bad/$b --db h.db; done
t runjson "compare with a missing folder" 2 20 "$M" compare "$GOOD" nosuch --db h.db
cp -r "$GOOD" bad/tsv && head -c 4096 /dev/urandom >bad/tsv/cases.tsv
t runjson "plot of binary cases.tsv" '[0-9]' 60 "$M" plot bad/tsv --out bad/tsvplots
t runjson "plot --trend FIFO" 1 10 "$M" plot --trend tr/fifo --out trendplots
t runjson "plot --trend /dev/zero" 1 10 "$M" plot --trend /dev/zero --out trendplots
t runjson "history record of a non-run" '[1-9]' 20 "$M" history record bad/arr --db h2.db

# ---- paths that a shell would run ----
t shell "plot --out '|touch PWNED;'" 0 60 "$M" plot "$GOOD" --out "|touch $MARK;"
cp -r "$GOOD" "<touch PWNED;"
t shell "run folder '<touch PWNED;'" 0 60 "$M" plot "<touch PWNED;"
t shell "report --out '|touch PWNED;/r.md'" 0 60 "$M" report "$GOOD" "$GOOD" --out "|touch $MARK;/r.md" --db h.db
printf '# run_id\tunix_time\tcase\tphase\tp50_us\tregression\nr\t1\ta\ttotal\t1\t0\n' >"<touch PWNED;.tsv"
t shell "plot --trend '<touch PWNED;.tsv'" 0 60 "$M" plot --trend "<touch PWNED;.tsv" --out trendplots
t shell "plot --out with a newline" 2 30 "$M" plot "$GOOD" --out "$(printf 'x\ny')"
LOSTCHK='[ "$(python3 -c "import json,glob;print(json.load(open(sorted(glob.glob(\"dn/2*/run.json\"))[-1]))[\"cases\"][0][\"verdict\"])")" = ok ]'
t shell "--dump path with newline + @corrupt line" 0 60 "$M" run good.ini --only a --out dn -q --dump "$W/$(printf 'd\n@corrupt=0:0')"

# ---- the machine: full disk, size and memory limits, signals ----
mkdir -p full
if mount -t tmpfs -o size=160k tmpfs full 2>/dev/null; then
  LOSTCHK='! grep -q "^# OK" out.txt && ! find full -name ".*.tmp.*" | grep -q .'
  t machine "run onto a full disk" 4 60 "$M" run good.ini --set iters=2000 --out full
  rm -rf full/2* full/latest
  dd if=/dev/zero of=full/fill bs=1k 2>/dev/null
  LOSTCHK='[ ! -s full/c.json ]'
  t machine "compare --json onto a full disk" '[1-9]' 30 "$M" compare "$GOOD" "$GOOD" --json full/c.json --db h.db
  LOSTCHK='[ ! -s full/c.md ]'
  t machine "compare --markdown onto a full disk" '[1-9]' 30 "$M" compare "$GOOD" "$GOOD" --markdown full/c.md --db h.db
  LOSTCHK='[ ! -s full/rep/r.md ]'
  t machine "report onto a full disk" '[1-9]' 60 "$M" report "$GOOD" "$GOOD" --out full/rep/r.md --db h.db
  LOSTCHK='! find full/pl -type f -size -1 | grep -q .'
  t machine "plot onto a full disk" '[1-9]' 60 "$M" plot "$GOOD" --out full/pl
  "$M" history record "$GOOD" --db h3.db >/dev/null 2>&1
  LOSTCHK='[ ! -s full/t.tsv ]'
  t machine "history trend --out onto a full disk" '[1-9]' 30 "$M" history trend --db h3.db --out full/t.tsv
  umount full
fi
t machine "ulimit -f 20" 3 60 sh -c "ulimit -f 20; exec '$M' run good.ini --out fsz -q"
t machine "ulimit -v 100000" 3 60 sh -c "ulimit -v 100000; exec '$M' run good.ini --out ulv"
for sig in INT TERM HUP; do
  LOSTCHK='python3 -c "import json,glob,sys; d=json.load(open(sorted(glob.glob(\"sig/2*/run.json\"))[-1])); sys.exit(0 if d[\"interrupted\"] else 1)"'
  rm -rf sig
  t machine "SIG$sig mid-run" "$((128 + $(kill -l $sig)))" 60 sh -c "'$M' run good.ini --set iters=100000 --out sig -q & p=\$!; sleep 2; kill -$sig \$p; wait \$p"
done

echo
echo "| category | inputs tried | handled | "
for c in "${!cat_tried[@]}"; do echo "| $c | ${cat_tried[$c]} | ${cat_handled[$c]:-0} |"; done
echo "TOTAL tried $tried handled $handled crashes $crashes hangs $hangs shell_reaches $shells lost $lost"
