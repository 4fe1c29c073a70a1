# Nightly trend: each case's p50 (µs) run after run over time, one panel per phase in the file (total first);
# a point is big and red in a run where that case regressed.
# usage: gnuplot -c plots/trend.gp TREND_TSV OUTFILE png|svg [SUBTITLE]
#   TREND_TSV columns: run_id, unix_time, case, phase, p50_us, regression (0 or 1); a '# ' header line
#   (moebench history trend --phase all --out FILE writes every phase; --phase P one of them).
# The ARGs are only ever used as file names and text: never built into commands (no eval, no @macros).
if (ARGC < 3) { print "usage: gnuplot -c trend.gp TREND_TSV OUTFILE png|svg [SUBTITLE]"; exit status 2 }
set datafile separator "\t"

c_time = 2; c_case = 3; c_phase = 4; c_p50 = 5; c_regression = 6
timed(x) = column(c_p50) > 0

# the phases with a time in them, 'total' first, then in file order
phases = ""
stats ARG1 using (p = strcol(c_phase), (timed(0) && strstrt(" ".phases." ", " ".p." ") == 0) ? (phases = phases." ".p, 1) : 1) nooutput
if (words(phases) == 0) { print "trend.gp: no timed rows"; exit status 3 }
if (strstrt(" ".phases." ", " total ") > 0) {
	rest = ""
	do for [i = 1:words(phases)] { if (word(phases, i) ne "total") { rest = rest." ".word(phases, i) } }
	phases = "total".rest
}
nph = words(phases)
cases = ""
stats ARG1 using (s = strcol(c_case), (timed(0) && strstrt(" ".cases." ", " ".s." ") == 0) ? (cases = cases." ".s, 1) : 1) nooutput
nc = words(cases)

# panels two abreast past one phase; the page grows with them
cols = nph > 1 ? 2 : 1
rows = int((nph + cols - 1) / cols)
height = nph > 1 ? 170 + 320 * rows : 650
if (ARG3 eq "svg") {
	set terminal svg size 1200,height dynamic noenhanced font "Sans,13" background rgb "white"
} else {
	if (ARG3 ne "png") { print "trend.gp: FORMAT must be png or svg"; exit status 2 }
	set terminal pngcairo size 1200,height noenhanced font "Sans,12" background rgb "white"
}
set encoding utf8
set output ARG2

# one data block per case and phase, sorted by time by 'smooth unique' (NaN filtering would break the lines);
# sprintf because the table's default %g keeps six digits: a unix time would move by minutes
do for [j = 1:nph] {
	do for [i = 1:nc] {
		s = word(cases, i); ph = word(phases, j)
		set table $by_case append
		plot ARG1 using (sprintf("%.0f", column(c_time))):(sprintf("%.3f", column(c_p50))) with table \
			if (strcol(c_case) eq s && strcol(c_phase) eq ph && timed(0))
		unset table
		set print $by_case append
		print ""
		print ""
		unset print
	}
}
nreg = 0
stats ARG1 using (timed(0) && strcol(c_phase) eq word(phases, 1) && column(c_regression) == 1 ? (nreg = nreg + 1) : 1) nooutput
stats ARG1 using (timed(0) ? column(c_time) : NaN) nooutput
t_lo = STATS_min; t_hi = STATS_max
span = t_hi > t_lo ? t_hi - t_lo : 3600

# a tick step from a list of round times, about six ticks, and a format that never repeats a label:
# seconds when the step is under a minute, the hour and minute under a day, else the date
steps = "1 2 5 10 15 30 60 120 300 600 900 1800 3600 7200 10800 21600 43200 86400 172800 259200 604800 1209600 2592000"
step = 2592000
do for [k = words(steps):1:-1] { if (real(word(steps, k)) >= span / 5.0) { step = real(word(steps, k)) } }
set xdata time
set timefmt "%s"
if (step < 60) {
	set format x "%H:%M:%S" time
	tfmt = "time of day, UTC (%Y-%m-%d)"
} else {
	if (step < 86400) {
		set format x (span < 86400 ? "%H:%M" : "%m-%d\n%H:%M") time
		tfmt = span < 86400 ? "time of day, UTC (%Y-%m-%d)" : "run date and time (UTC)"
	} else {
		set format x "%m-%d" time
		tfmt = "run date, UTC (from %Y-%m-%d)"
	}
}
set xtics step * floor(t_lo / step), step
set xrange [t_lo - 0.04 * span : t_hi + 0.04 * span]
xlab = strftime(tfmt, t_lo)
set yrange [0:*]
set grid xtics ytics lt 1 lc rgb "#d8d8d8"

cut(s, a) = strstrt(s, a) ? s[1:strstrt(s, a) - 1].cut(s[strstrt(s, a) + strlen(a):], a) : s
short(s) = cut(cut(s, "strategy="), "partition=")
key_font = nc > 12 ? ",9" : ",11"
# small multiples: one key for all panels, across the foot of the page
key_rows = int((nc + 1 + 3) / 4)
foot = (40.0 + 22 * key_rows) / height
set multiplot layout rows, cols margins 0.09, 0.98, foot + 0.07, 1 - 90.0 / height spacing 0.11, 0.1 title sprintf("Nightly trend: p50 per run, per case and phase%s\n%d regression%s flagged on %s (red: the case regressed in that run, in any phase)", \
	ARGC >= 4 && strlen(ARG4) ? " — ".ARG4 : "", nreg, nreg == 1 ? "" : "s", word(phases, 1))
do for [j = 1:nph] {
	ph = word(phases, j)
	# the phase names its panel inside the frame; the time axis is named under the bottom row only
	set label 1 ph at graph 0.02, graph 0.93 left font ",13" front
	if (j > nph - cols) { set xlabel xlab } else { unset xlabel }
	set ylabel sprintf("%s p50 (µs)", ph)
	if (j == 1) {
		set key at screen 0.5, screen 0.01 center bottom horizontal maxcols 4 box spacing 1.1 samplen 2 font key_font
	} else {
		unset key
	}
	plot for [i = 1:nc] $by_case index ((j - 1) * nc + i - 1) using 1:2 smooth unique with linespoints lw 2 pt 7 ps 0.7 \
		lc ((i - 1) % 8 + 1) dt 1 + int((i - 1) / 8) title short(word(cases, i)), \
	     ARG1 using (column(c_time)):(strcol(c_phase) eq ph && timed(0) && column(c_regression) == 1 ? column(c_p50) : NaN) \
		with points pt 7 ps 2.2 lc rgb "#e00000" title "regression"
}
unset multiplot
