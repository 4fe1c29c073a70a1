# Nightly trend: each case's p50 total (µs) run after run over time; a case's point is big and red in the runs
# where that case regressed (in any phase).
# usage: gnuplot -c plots/trend.gp TREND_TSV OUTFILE png|svg [SUBTITLE]
#   TREND_TSV columns: run_id, unix_time, case, phase, p50_us, regression (0 or 1); a '# ' header line.
# The ARGs are only ever used as file names and text: never built into commands (no eval, no @macros).
if (ARGC < 3) { print "usage: gnuplot -c trend.gp TREND_TSV OUTFILE png|svg [SUBTITLE]"; exit status 2 }
if (ARG3 eq "svg") {
	set terminal svg size 1000,600 dynamic noenhanced font "Sans,14" background rgb "white"
} else {
	if (ARG3 ne "png") { print "trend.gp: FORMAT must be png or svg"; exit status 2 }
	set terminal pngcairo size 1000,600 noenhanced font "Sans,13" background rgb "white"
}
set encoding utf8
set output ARG2
set datafile separator "\t"

c_time = 2; c_case = 3; c_phase = 4; c_p50 = 5; c_regression = 6
is_total(x) = strcol(c_phase) eq "total" && column(c_p50) > 0

cases = ""
stats ARG1 using (s = strcol(c_case), \
	(is_total(0) && strstrt(" ".cases." ", " ".s." ") == 0) ? (cases = cases." ".s, 1) : 1) nooutput
if (words(cases) == 0) { print "trend.gp: no 'total' rows"; exit status 3 }

# one data block per case, sorted by time by 'smooth unique' (NaN filtering would break the lines);
# sprintf because the table's default %g keeps six digits: a unix time would move by minutes
do for [i = 1:words(cases)] {
	s = word(cases, i)
	set table $by_case append
	plot ARG1 using (sprintf("%.0f", column(c_time))):(sprintf("%.3f", column(c_p50))) with table if (strcol(c_case) eq s && is_total(0))
	unset table
	set print $by_case append
	print ""
	print ""
	unset print
}
nreg = 0
stats ARG1 using (is_total(0) && column(c_regression) == 1 ? (nreg = nreg + 1) : 1) nooutput
stats ARG1 using (is_total(0) ? column(c_time) : NaN) nooutput
t_lo = STATS_min; t_hi = STATS_max

cut(s, a) = strstrt(s, a) ? s[1:strstrt(s, a) - 1].cut(s[strstrt(s, a) + strlen(a):], a) : s
short(s) = cut(cut(s, "strategy="), "partition=")

set title sprintf("Nightly trend: p50 total latency per run, per case%s\n%d regression%s flagged (red)", \
	ARGC >= 4 && strlen(ARG4) ? " — ".ARG4 : "", nreg, nreg == 1 ? "" : "s")
set xdata time
set timefmt "%s"
# runs within two days need the hour to tell apart; longer spans only the date
# and whole-day steps from the first run, or the date repeats under every few hours' tick
if (t_hi - t_lo < 2 * 86400) {
	set format x "%m-%d\n%H:%M" time
} else {
	set format x "%Y-%m-%d" time
	set xtics t_lo, 86400 * ceil((t_hi - t_lo) / 86400.0 / 8)
}
set xlabel "run date (UTC)"
set ylabel "total latency, p50 (µs)"
span = t_hi > t_lo ? t_hi - t_lo : 3600
set xrange [t_lo - 0.04 * span : t_hi + 0.04 * span]
set yrange [0:*]
set grid xtics ytics lt 1 lc rgb "#d8d8d8"
key_font = words(cases) > 12 ? ",10" : ",12"
set key font key_font
set key outside right top box title "case" spacing 1.2 samplen 2.5

plot for [i = 1:words(cases)] $by_case index (i - 1) using 1:2 smooth unique with linespoints lw 2 pt 7 ps 0.8 \
	lc ((i - 1) % 8 + 1) dt 1 + int((i - 1) / 8) title short(word(cases, i)), \
     ARG1 using (column(c_time)):(is_total(0) && column(c_regression) == 1 ? column(c_p50) : NaN) \
	with points pt 7 ps 3 lc rgb "#e00000" title "regression"
