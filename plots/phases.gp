# Where each case's time goes: per-phase p50 (µs) stacked into one bar per case, from a run's cases.tsv.
# usage: gnuplot -c plots/phases.gp CASES_TSV OUTFILE png|svg [SUBTITLE]
# The ARGs are only ever used as file names and text: never built into commands (no eval, no @macros).
if (ARGC < 3) { print "usage: gnuplot -c phases.gp CASES_TSV OUTFILE png|svg [SUBTITLE]"; exit status 2 }
if (ARG3 eq "svg") {
	set terminal svg size 1000,600 dynamic noenhanced font "Sans,14" background rgb "white"
} else {
	if (ARG3 ne "png") { print "phases.gp: FORMAT must be png or svg"; exit status 2 }
	set terminal pngcairo size 1000,600 noenhanced font "Sans,13" background rgb "white"
}
set encoding utf8
set output ARG2
set datafile separator "\t"

# cases.tsv columns: name, then the p50 of route, dispatch, expert, combine, tp_merge, fetch_wait, total
c_case = 1
phases = "route dispatch expert combine tp_merge fetch_wait"
phase_col(i) = 14 + 2 * (i - 1)
c_total_p50 = 26

# case names repeat the scenario's keys ("s2x2/strategy=a2a/partition=leader"): the values say enough
cut(s, a) = strstrt(s, a) ? s[1:strstrt(s, a) - 1].cut(s[strstrt(s, a) + strlen(a):], a) : s
short(s) = cut(cut(s, "strategy="), "partition=")

stats ARG1 using (1) nooutput
ncases = STATS_records
if (ncases == 0) { print "phases.gp: no cases"; exit status 3 }

# the bar is the sum of the phase medians by construction; the total's own median is a separate mark because
# the two differ: each phase's figure is the slowest rank in that phase, and different ranks are slowest in
# different phases, so the sum exceeds the slowest rank's whole iteration; medians do not add either
set title sprintf("Where the time goes: per-phase p50 per case%s\nbar = sum of phase medians (each phase: its slowest rank); ■ = median total (slowest rank overall)", \
	ARGC >= 4 && strlen(ARG4) ? "\n".ARG4 : "")
set ylabel "p50 time per phase (µs)"
# an xlabel would sit below gnuplot's overestimate of the rotated labels, off the canvas: place it
set label 2 "case (scenario section / swept values)" at graph 0.5, screen 0.03 center
set style data histograms
set style histogram rowstacked
set style fill solid 0.9 border rgb "#404040"
set boxwidth 0.75 relative
set yrange [0:*]
set grid ytics lt 1 lc rgb "#d8d8d8"
# long names need the room below the plot; many cases need a smaller font to keep labels apart
tic_font = ncases > 40 ? ",7" : ncases > 20 ? ",9" : ",11"
set xtics rotate by 40 right nomirror font tic_font
# gnuplot's own margin for rotated labels leaves a gap: size it from the longest label instead
maxlen = 0
stats ARG1 using (n = strlen(short(strcol(c_case))), maxlen = n > maxlen ? n : maxlen, 1) nooutput
set bmargin 4 + 0.24 * maxlen * (ncases > 40 ? 7 : ncases > 20 ? 9 : 11) / 13.0
set key outside right top vertical Left reverse box samplen 2 spacing 1.2 title "phase"

plot for [i = 1:words(phases)] ARG1 using (column(phase_col(i))):xtic(short(strcol(c_case))) \
	title word(phases, i) lc i, \
     ARG1 using 0:(column(c_total_p50)) with points pt 5 ps 1.0 lc rgb "black" title "median total"
