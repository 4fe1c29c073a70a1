# Per-rank heat map of one case: rank across, phase down, colour = that rank's p50 (µs), from a run's ranks.tsv.
# usage: gnuplot -c plots/ranks.gp RANKS_TSV OUTFILE png|svg [CASE] [SUBTITLE]   (CASE: default the file's first)
# The ARGs are only ever used as file names and text: never built into commands (no eval, no @macros).
if (ARGC < 3) { print "usage: gnuplot -c ranks.gp RANKS_TSV OUTFILE png|svg [CASE] [SUBTITLE]"; exit status 2 }
if (ARG3 eq "svg") {
	set terminal svg size 1000,600 dynamic noenhanced font "Sans,14" background rgb "white"
} else {
	if (ARG3 ne "png") { print "ranks.gp: FORMAT must be png or svg"; exit status 2 }
	set terminal pngcairo size 1000,600 noenhanced font "Sans,13" background rgb "white"
}
set encoding utf8
set output ARG2
set datafile separator "\t"

# ranks.tsv columns: case, rank, phase, p50_us (the file holds every case of the run)
c_case = 1; c_rank = 2; c_phase = 3; c_p50 = 4

case_name = ARGC >= 4 ? ARG4 : ""
if (strlen(case_name) == 0) {
	stats ARG1 using (strlen(case_name) == 0 ? (case_name = strcol(c_case), 1) : 1) nooutput
}
is_mine(x) = strcol(c_case) eq case_name

# the phases this case spent time in, file order, total last: an all-zero row says nothing
phases = ""
stats ARG1 using (p = strcol(c_phase), \
	(is_mine(0) && column(c_p50) > 0 && p ne "total" && strstrt(" ".phases." ", " ".p." ") == 0) \
	? (phases = phases." ".p, 1) : 1) nooutput
has_total = 0
stats ARG1 using (is_mine(0) && strcol(c_phase) eq "total" && column(c_p50) > 0 ? (has_total = 1) : 1) nooutput
if (has_total) { phases = phases." total" }
if (words(phases) == 0) { print sprintf("ranks.gp: no time recorded for case '%s'", case_name); exit status 3 }

row_of(p, i) = i > words(phases) ? NaN : word(phases, i) eq p ? i : row_of(p, i + 1)
row(p) = row_of(p, 1)

stats ARG1 using (is_mine(0) ? column(c_rank) : NaN) nooutput
nranks = int(STATS_max) + 1
stats ARG1 using (is_mine(0) && column(c_p50) > 0 && row(strcol(c_phase)) == row(strcol(c_phase)) ? column(c_p50) : NaN) nooutput
vmin = STATS_min; vmax = STATS_max

# the slowest rank on total is the one every other rank waits for
slow_note = ""
if (has_total) {
	stats ARG1 using (is_mine(0) && strcol(c_phase) eq "total" ? column(c_rank) : NaN): \
		(is_mine(0) && strcol(c_phase) eq "total" ? column(c_p50) : NaN) nooutput
	slow_rank = int(STATS_pos_max_y)
	slow_note = sprintf("slowest rank on total: %d (%.0f µs, %+.0f%% over the fastest, rank %d)", \
		slow_rank, STATS_max_y, 100.0 * (STATS_max_y / STATS_min_y - 1), int(STATS_pos_min_y))
	set object 1 rect from slow_rank - 0.5, row("total") - 0.5 to slow_rank + 0.5, row("total") + 0.5 \
		front fillstyle empty border lc rgb "red" lw 4
}

set title sprintf("Per-rank p50 by phase: %s%s\n%s", case_name, \
	ARGC >= 5 && strlen(ARG5) ? "\n".ARG5 : "", slow_note)
set xlabel "rank"
set ylabel "phase"
set cblabel "p50 per rank (µs, log scale)"
set xrange [-0.5 : nranks - 0.5]
set yrange [words(phases) + 0.5 : 0.5]
set xtics 1 nomirror out
if (nranks > 32) { set xtics nranks / 16 }
set ytics nomirror out ()
do for [i = 1:words(phases)] { set ytics add (word(phases, i) i) }
set logscale cb 10
set cbrange [vmin : vmax * 1.0001]
set format cb "%.0f"
# viridis: ordered in lightness, so the slow cells read as bright without a legend lookup
set palette defined (0 "#440154", 1 "#3b528b", 2 "#21918c", 3 "#5ec962", 4 "#fde725")
set style fill solid 1.0 noborder
unset key
set border 3

frac(v) = vmax > vmin ? (log10(v) - log10(vmin)) / (log10(vmax) - log10(vmin)) : 0.5
label_of(v) = v >= 100 ? sprintf("%.0f", v) : sprintf("%.1f", v)
# values in the cells while they fit; past 16 ranks the colour alone has to do
label_font = nranks > 8 ? ",9" : ",12"
cell(w) = is_mine(0) && row(strcol(c_phase)) == row(strcol(c_phase)) ? w : NaN

# zero cells (a rank with nothing to do) are grey: a log scale has no colour for them
plot ARG1 using (cell(column(c_rank))):(row(strcol(c_phase))):(0.5):(0.5): \
	(column(c_p50) > 0 ? column(c_p50) : NaN) with boxxyerror lc palette, \
     ARG1 using (cell(column(c_rank))):(column(c_p50) > 0 ? NaN : row(strcol(c_phase))):(0.5):(0.5) \
	with boxxyerror lc rgb "#e0e0e0", \
     ARG1 using (nranks <= 16 ? cell(column(c_rank)) : NaN):(row(strcol(c_phase))):(label_of(column(c_p50))): \
	(column(c_p50) > 0 && frac(column(c_p50)) > 0.55 ? 0x000000 : 0xffffff) \
	with labels tc rgb variable font label_font
