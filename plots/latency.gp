# Total latency (p50, µs) against tokens across all DP groups, one series per strategy, from a run's cases.tsv.
# usage: gnuplot -c plots/latency.gp CASES_TSV OUTFILE png|svg [SUBTITLE]
# The ARGs are only ever used as file names and text: never built into commands (no eval, no @macros).
if (ARGC < 3) { print "usage: gnuplot -c latency.gp CASES_TSV OUTFILE png|svg [SUBTITLE]"; exit status 2 }
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
c_strategy = 2; c_tokens_total = 9; c_total_p50 = 26

# empty cases (no tokens) and unmeasured ones have no place on log axes
usable(t, y) = t > 0 && y > 0

# the strategies present, in file order: a new strategy needs no edit here
strategies = ""
stats ARG1 using (s = strcol(c_strategy), \
	(usable(column(c_tokens_total), column(c_total_p50)) && strstrt(" ".strategies." ", " ".s." ") == 0) \
	? (strategies = strategies." ".s, 0) : 0) nooutput
if (words(strategies) == 0) { print "latency.gp: no case with tokens and a total time"; exit status 3 }

# one data block per strategy: filtering with NaN would cut 'smooth unique' into one-point pieces
# (sprintf: the table's default %g keeps only six digits)
do for [i = 1:words(strategies)] {
	s = word(strategies, i)
	set table $by_strategy append
	plot ARG1 using (sprintf("%.0f", column(c_tokens_total))):(sprintf("%.3f", column(c_total_p50))) with table \
		if (strcol(c_strategy) eq s && usable(column(c_tokens_total), column(c_total_p50)))
	unset table
	set print $by_strategy append
	print ""
	print ""
	unset print
}

set title sprintf("Total latency (p50) against tokens, per strategy%s", \
	ARGC >= 4 && strlen(ARG4) ? "\n".ARG4 : "")
set xlabel "tokens in the step, all DP groups (log scale)"
set ylabel "total latency, p50 (µs, log scale)"
set logscale x 2
set logscale y 10
set format x "%.0f"
set format y "%.0f"
# a log axis spanning less than two decades would show one label or none: add the 2s and 5s
stats $by_strategy using 2 nooutput
set ytics (1, 10, 100, 1000, 10000, 100000, 1000000, 10000000, 100000000)
if (STATS_max < 100 * STATS_min) {
	do for [k = 0:8] { set ytics add (2 * 10**k, 5 * 10**k) }
}
set mytics 10
set grid xtics ytics lt 1 lc rgb "#d8d8d8" lw 1
set autoscale fix
set offsets graph 0.06, graph 0.06, graph 0.12, graph 0.12
set key outside right top box title "strategy" spacing 1.3
set label 1 "points: one case each\nline: mean of the cases\nat equal tokens" at screen 0.985, screen 0.12 right font ",11"
set rmargin at screen 0.80

plot for [i = 1:words(strategies)] $by_strategy index (i - 1) using 1:2 \
	smooth unique with lines lw 2 lc i notitle, \
     for [i = 1:words(strategies)] $by_strategy index (i - 1) using 1:2 \
	with points pt (2 * i + 5) ps 1.6 lw 2 lc i notitle, \
     for [i = 1:words(strategies)] keyentry with linespoints pt (2 * i + 5) ps 1.6 lw 2 lc i \
	title word(strategies, i)
