/* Plots of a run's results and of the nightly trend: gnuplot scripts from plots/, run without a shell. */
#ifndef MOE_PLOT_H
#define MOE_PLOT_H

#include <stddef.h>

/* moe_plot_* return this for a path they refuse to hand to gnuplot (a control character in it): a usage error */
#define MOE_PLOT_REFUSED (-2)

/* The folder of the .gp scripts: "plots" under the working directory when it holds them, else the
 * source tree's. Points at static storage. */
const char *moe_plot_scripts_dir(void);

/* Render a run folder's cases.tsv, samples.tsv and ranks.tsv into out_dir (created if missing), each
 * plot as .png and .svg: latency, phases, cdf, and ranks-<case> for up to 8 cases. A plot whose data is
 * empty is skipped, not an error. plots_dir NULL means moe_plot_scripts_dir(). Every path reaches gnuplot
 * absolute or as "./PATH" (never read as "|cmd" or "<cmd"); each plot is written to a temp file and
 * renamed once gnuplot succeeded and left a non-empty file. Returns 0, MOE_PLOT_REFUSED for a path with
 * a control character, or -1 with the reason (which plot failed and gnuplot's last words) in err. */
int moe_plot_run(const char *run_dir, const char *out_dir, const char *plots_dir, char *err, size_t errlen);

/* Render a nightly trend TSV (run_id, unix_time, case, phase, p50_us, regression) into
 * out_dir/trend.png and .svg. Same conventions as moe_plot_run. */
int moe_plot_trend(const char *trend_tsv, const char *out_dir, const char *plots_dir, char *err, size_t errlen);

#endif
