# Total latency (p50, µs) against tokens, from a run's cases.tsv and axes.tsv.
# usage: gnuplot -c plots/latency.gp CASES_TSV OUTFILE png|svg [SUBTITLE] [AXES_TSV]
# A line joins only cases that differ in tokens alone (axes.tsv's groups along 'tokens'): one line per group,
# named by what its cases hold fixed. Every other case is a lone point, never averaged with unlike cases.
# The ARGs are only ever used as file names and text: never built into commands (no eval, no @macros).
if (ARGC < 3) { print "usage: gnuplot -c latency.gp CASES_TSV OUTFILE png|svg [SUBTITLE] [AXES_TSV]"; exit status 2 }
if (ARG3 eq "svg") {
	set terminal svg size 1000,600 dynamic noenhanced font "Sans,14" background rgb "white"
} else {
	if (ARG3 ne "png") { print "latency.gp: FORMAT must be png or svg"; exit status 2 }
	set terminal pngcairo size 1000,600 noenhanced font "Sans,13" background rgb "white"
}
set encoding utf8
set output ARG2
set datafile separator "\t"

# cases.tsv columns (the '# ' header line is a comment to gnuplot, so they are fixed here)
c_case = 1; c_strategy = 2; c_tokens_total = 9; c_total_p50 = 26
# axes.tsv columns: group, axis, fixed, ..., phase (7), median_us (8), ..., tokens_total (14)
a_group = 1; a_axis = 2; a_fixed = 3; a_case = 5; a_phase = 7; a_median = 8; a_tokens = 14

# empty cases (no tokens) and unmeasured ones have no place on log axes
usable(t, y) = t > 0 && y > 0
axes = ARGC >= 5 ? ARG5 : ""
is_tok(x) = strcol(a_axis) eq "tokens" && strcol(a_phase) eq "total" && usable(column(a_tokens), column(a_median))

# the groups along tokens, in file order, and the cases on their lines
groups = ""; joined = " "
$lines << EOD
EOD
array labels[100]
if (strlen(axes) > 0) {
	stats axes using (g = sprintf("%d", column(a_group)), \
		(is_tok(0) && strstrt(" ".groups." ", " ".g." ") == 0) ? (groups = groups." ".g, 1) : 1) nooutput
	do for [i = 1:words(groups)] {
		gi = int(word(groups, i))
		stats axes using (is_tok(0) && column(a_group) == gi ? (labels[i <= 100 ? i : 100] = strcol(a_fixed), 1) : 1) nooutput
		set table $lines append
		plot axes using (sprintf("%.0f", column(a_tokens))):(sprintf("%.3f", column(a_median))) \
			with table if (is_tok(0) && column(a_group) == gi)
		unset table
		set print $lines append
		print ""
		print ""
		unset print
	}
	stats axes using (is_tok(0) && strstrt(joined, " ".strcol(a_case)." ") == 0 ? (joined = joined.strcol(a_case)." ", 1) : 1) nooutput
}
# past 100 lines the key and the colours stop telling them apart: the title says how many were left out
nlines = words(groups) > 100 ? 100 : words(groups)
on_line(x) = strstrt(joined, " ".strcol(c_case)." ") > 0

# the rest: one point per case, marked by strategy
strategies = ""; nlone = 0; nall = 0
stats ARG1 using (s = strcol(c_strategy), ok = usable(column(c_tokens_total), column(c_total_p50)), nall = nall + ok, \
	(ok && !on_line(0)) ? (nlone = nlone + 1, strstrt(" ".strategies." ", " ".s." ") == 0 ? (strategies = strategies." ".s, 0) : 0) : 0) nooutput
if (nlines == 0 && nlone == 0) { print "latency.gp: no case with tokens and a total time"; exit status 3 }
stats ARG1 using (usable(column(c_tokens_total), column(c_total_p50)) ? column(c_total_p50) : NaN) nooutput
ylo = STATS_min; yhi = STATS_max

set title sprintf("Total latency (p50) against tokens%s\n%s", ARGC >= 4 && strlen(ARG4) ? "\n".ARG4 : "", \
	nlines ? sprintf("lines join cases that differ in tokens only (%d line%s)%s", nlines, nlines == 1 ? "" : "s", \
		nlone ? sprintf("; %d other case%s as lone points", nlone, nlone == 1 ? "" : "s") : "") \
	: "no two cases differ in tokens alone: each point is one case, nothing is joined or averaged")
set xlabel "tokens in the step, all DP groups (log scale)"
set ylabel "total latency, p50 (µs, log scale)"
set logscale x 2
set logscale y 10
set format x "%.0f"
set format y "%.0f"
# a log axis spanning less than two decades would show one label or none: add the 2s and 5s
set ytics (1, 10, 100, 1000, 10000, 100000, 1000000, 10000000, 100000000)
if (yhi < 100 * ylo) {
	do for [k = 0:8] { set ytics add (2 * 10**k, 5 * 10**k) }
}
set mytics 10
set grid xtics ytics lt 1 lc rgb "#d8d8d8" lw 1
set autoscale fix
set offsets graph 0.06, graph 0.06, graph 0.12, graph 0.12
set key outside right top box spacing 1.3 font ",10" width 2
set rmargin at screen 0.70

lone(y) = on_line(0) ? NaN : y
plot for [i = 1:nlines] $lines index (i - 1) using 1:2 with linespoints lw 2 pt 7 ps 1.2 lc i \
	title labels[i], \
     for [i = 1:words(strategies)] ARG1 using (strcol(c_strategy) eq word(strategies, i) ? column(c_tokens_total) : NaN): \
	(lone(column(c_total_p50))) with points pt (2 * i + 4) ps 1.8 lw 2 lc rgb "#505050" \
	title sprintf("lone case, strategy %s", word(strategies, i)), \
     ARG1 using (nlone <= 12 ? column(c_tokens_total) : NaN):(lone(column(c_total_p50))):(strcol(c_case)) \
	with labels left offset 1.2, 0 font ",9" tc rgb "#505050" notitle
