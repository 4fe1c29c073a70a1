# In-run comparison: per group of cases that differ in one parameter only, each case's median total over the
# group's first case (the baseline), with its 95 % bootstrap interval as whiskers, from a run's axes.tsv.
# usage: gnuplot -c plots/axes.gp AXES_TSV OUTFILE png|svg [SUBTITLE]
# The ARGs are only ever used as file names and text: never built into commands (no eval, no @macros).
if (ARGC < 3) { print "usage: gnuplot -c axes.gp AXES_TSV OUTFILE png|svg [SUBTITLE]"; exit status 2 }
set datafile separator "\t"
# axes.tsv columns (docs/RESULTS.md): group, axis, fixed, value, case, is_baseline, phase, median_us,
# baseline_median_us, ratio, ci_lo, ci_hi, verdict, ..., member, members
c_group = 1; c_axis = 2; c_fixed = 3; c_value = 4; c_base = 6; c_phase = 7
c_ratio = 10; c_lo = 11; c_hi = 12; c_member = 18; c_members = 19
is_total(x) = strcol(c_phase) eq "total"

stats ARG1 using (is_total(0) ? column(c_group) : NaN) nooutput
if (!exists("STATS_records") || STATS_records == 0) { print "axes.gp: no group of cases differs in one parameter only"; exit status 3 }
ngroups = int(STATS_max) + 1
nbars = STATS_records
stats ARG1 using (is_total(0) ? column(c_hi) : NaN) nooutput
ymax = STATS_max
stats ARG1 using (is_total(0) && column(c_lo) > 0 ? column(c_lo) : NaN) nooutput
ymin = STATS_min

# a wider page when there are many bars, so that labels keep apart
width = nbars > 24 ? 1000 + 28 * (nbars - 24) : 1000
if (ARG3 eq "svg") {
	set terminal svg size width,650 dynamic noenhanced font "Sans,14" background rgb "white"
} else {
	if (ARG3 ne "png") { print "axes.gp: FORMAT must be png or svg"; exit status 2 }
	set terminal pngcairo size width,650 noenhanced font "Sans,13" background rgb "white"
}
set encoding utf8
set output ARG2

# a group's bars side by side around its slot; the slot's label says what the group holds fixed
bw = 0.8
x_of(g, k, n) = g + (k - (n - 1) / 2.0) * bw / n
band = 0.02
faster(lo, hi) = hi < 1 - band
slower(lo, hi) = lo > 1 + band
colour(b, lo, hi) = b != 0 ? 0xc8c8c8 : faster(lo, hi) ? 0x2e9e44 : slower(lo, hi) ? 0xd0413b : 0x7f9fc4

set xtics () rotate by 30 right nomirror font ",10"
set table $slots separator tab
plot ARG1 using (column(c_group)):(strcol(c_fixed)."\nby ".strcol(c_axis)) with table \
	if (is_total(0) && column(c_base) == 1)
unset table
stats $slots using 1 nooutput
do for [i = 1:STATS_records] {
	line = $slots[i]
	tab = strstrt(line, "\t")
	set xtics add (line[tab + 1:] real(line[1:tab - 1]))
}

set title sprintf("One run, one parameter changed: each case's median total over its group's first case\nbars: ratio of medians; whiskers: 95 %% bootstrap interval; within 1 ± %.0f %% counts as not separable%s", \
	100 * band, ARGC >= 4 && strlen(ARG4) ? "\n".ARG4 : "")
# a ratio scale: 2x slower sits as far from 1 as 2x faster, and bars grow from 1 up (slower) or down (faster)
set ylabel "median total / baseline's median total (log scale)"
set xrange [-0.6 : ngroups - 0.4]
ylo = (ymin < 0.8 ? ymin : 0.8) / 1.5
yhi = (ymax > 1.25 ? ymax : 1.25) * 1.3
set logscale y 2
set yrange [ylo : yhi]
# powers of two over a wide range; the in-between ratios too while they have room
set ytics ("1/64" 1/64., "1/32" 1/32., "1/16" 0.0625, "1/8" 0.125, "1/4" 0.25, "1/2" 0.5, "1" 1, \
	"2" 2, "4" 4, "8" 8, "16" 16, "32" 32, "64" 64, "128" 128)
if (yhi / ylo < 16) { set ytics add ("1/3" 1/3., "2/3" 2/3., "0.8" 0.8, "1.25" 1.25, "1.5" 1.5, "3" 3) }
set grid ytics lt 1 lc rgb "#e0e0e0"
set object 1 rect from graph 0, first 1 - band to graph 1, first 1 + band behind fc rgb "#f0e0a0" fs solid 0.6 noborder
set arrow 1 from graph 0, first 1 to graph 1, first 1 nohead dt 2 lc rgb "#606060" back
set style fill solid 0.85 border rgb "#404040"
# the key across the foot of the page: the right margin stays free for the bars
set key at screen 0.5, screen 0.015 center bottom horizontal box title "the case is" samplen 2 spacing 1.1
set rmargin 3
set bmargin 11
set lmargin 16
label_font = nbars > 30 ? ",8" : ",10"

# rows that are not drawn get an undefined x (no line joins boxes, so NaN filtering is safe here)
xb(want_base) = is_total(0) && (want_base < 0 || column(c_base) == want_base) ? \
	x_of(column(c_group), column(c_member), column(c_members)) : NaN
half(x) = bw / column(c_members) / 2
plot ARG1 using (xb(-1)):(column(c_ratio)):(xb(-1) - half(0)):(xb(-1) + half(0)): \
	(column(c_ratio) < 1 ? column(c_ratio) : 1):(column(c_ratio) < 1 ? 1 : column(c_ratio)): \
	(colour(column(c_base), column(c_lo), column(c_hi))) with boxxyerror lc rgb variable notitle, \
     ARG1 using (xb(1) - half(0)):(1):(2 * half(0)):(0) with vectors nohead lw 4 lc rgb "#909090" notitle, \
     ARG1 using (xb(0)):(column(c_ratio)):(column(c_lo)):(column(c_hi)) with yerrorbars pt 7 ps 0.5 lw 1.5 lc rgb "black" notitle, \
     ARG1 using (xb(-1)):(ylo):(strcol(c_value)) with labels rotate by 90 left offset 0, 0.4 font label_font notitle, \
     keyentry with lines lw 4 lc rgb "#909090" title "the baseline (1)", \
     keyentry with boxes lc rgb "#2e9e44" title "faster", \
     keyentry with boxes lc rgb "#d0413b" title "slower", \
     keyentry with boxes lc rgb "#7f9fc4" title "not separable"
