# Latency distribution: empirical CDF of each case's per-iteration total (µs, slowest rank), from samples.tsv.
# usage: gnuplot -c plots/cdf.gp SAMPLES_TSV OUTFILE png|svg [CASES] [SUBTITLE]
#   CASES: the cases to draw, separated by spaces (a name with spaces in double quotes); default all of them.
# The ARGs are only ever used as file names and text: never built into commands (no eval, no @macros).
if (ARGC < 3) { print "usage: gnuplot -c cdf.gp SAMPLES_TSV OUTFILE png|svg [CASES] [SUBTITLE]"; exit status 2 }
if (ARG3 eq "svg") {
	set terminal svg size 1000,600 dynamic noenhanced font "Sans,14" background rgb "white"
} else {
	if (ARG3 ne "png") { print "cdf.gp: FORMAT must be png or svg"; exit status 2 }
	set terminal pngcairo size 1000,600 noenhanced font "Sans,13" background rgb "white"
}
set encoding utf8
set output ARG2
set datafile separator "\t"

# samples.tsv columns: case, iter, phase, us (per iteration, the max over the ranks)
c_case = 1; c_phase = 3; c_us = 4
is_total(x) = strcol(c_phase) eq "total" && column(c_us) > 0

cases = ARGC >= 4 ? ARG4 : ""
if (words(cases) == 0) {
	cases = ""
	stats ARG1 using (s = strcol(c_case), \
		(is_total(0) && strstrt(" ".cases." ", " ".s." ") == 0) ? (cases = cases." ".s, 1) : 1) nooutput
}

# one data block per case: filtering with NaN would cut 'smooth cnormal' into one-point pieces
# (sprintf: the table's default %g keeps only six digits)
ncurves = 0
do for [i = 1:words(cases)] {
	s = word(cases, i)
	set table $by_case append
	plot ARG1 using (sprintf("%.3f", column(c_us))):(1) with table if (strcol(c_case) eq s && is_total(0))
	unset table
	set print $by_case append
	print ""
	print ""
	unset print
}
stats $by_case using 1 nooutput
if (!exists("STATS_records") || STATS_records == 0) { print "cdf.gp: no 'total' samples"; exit status 3 }
lo = STATS_min; hi = STATS_max

cut(s, a) = strstrt(s, a) ? s[1:strstrt(s, a) - 1].cut(s[strstrt(s, a) + strlen(a):], a) : s
short(s) = cut(cut(s, "strategy="), "partition=")

set title sprintf("Latency distribution: CDF of the per-iteration total, per case%s", \
	ARGC >= 5 && strlen(ARG5) ? "\n".ARG5 : "")
# cases an order of magnitude apart would crowd into one corner of a linear axis
if (hi > 20 * lo) {
	set logscale x 10
	set xrange [lo / 1.25 : hi * 1.25]
	# a few decades show one or two labels: add the 2s and 5s
	set xtics (1, 10, 100, 1000, 10000, 100000, 1000000, 10000000, 100000000)
	do for [k = 0:8] { set xtics add (2 * 10**k, 5 * 10**k) }
	set xlabel "total time of one iteration, slowest rank (µs, log scale)"
} else {
	set xlabel "total time of one iteration, slowest rank (µs)"
	set xrange [lo - 0.05 * (hi - lo) - 1 : hi + 0.05 * (hi - lo) + 1]
}
set format x "%.0f"
set ylabel "fraction of iterations at or below x"
set yrange [0:1.02]
set ytics 0, 0.1, 1
set grid xtics ytics lt 1 lc rgb "#d8d8d8"
set arrow 1 from graph 0, first 0.5 to graph 1, first 0.5 nohead dt 2 lc rgb "#808080"
set arrow 2 from graph 0, first 0.99 to graph 1, first 0.99 nohead dt 2 lc rgb "#808080"
set label 1 "p50" at graph 0.01, first 0.5 left offset 0, 0.6 font ",10" tc rgb "#606060"
set label 2 "p99" at graph 0.01, first 0.99 left offset 0, -0.6 font ",10" tc rgb "#606060"
key_font = words(cases) > 12 ? ",10" : ",12"
set key font key_font
set key outside right top box title "case" spacing 1.1 samplen 2.5

plot for [i = 1:words(cases)] $by_case index (i - 1) using 1:2 smooth cnormal with steps lw 2 \
	lc ((i - 1) % 8 + 1) dt 1 + int((i - 1) / 8) title short(word(cases, i))
