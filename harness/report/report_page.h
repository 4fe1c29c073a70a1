/* The review pages in Markdown: one run's (report RUN), and what report BASE NEW adds to the comparison. */
#ifndef MOE_REPORT_PAGE_H
#define MOE_REPORT_PAGE_H

#include <jansson.h>
#include <stdio.h>

/* md_path: the resolved configuration (shared parameters once, differing ones per case), the environment,
 * the table, run.json's comparisons and the plots of run_dir (NULL: none), drawn into md_path's folder's
 * plots/. Returns 0, 1 when the page was written without plots (stderr says why), -1 when it was not. */
int moe_report_run(json_t *run, const char *run_dir, const char *md_path);
/* "Configuration differences": parameters that differ between cases of the same name, environment keys
 * that differ. */
void moe_report_config_diff(FILE *f, json_t *base, json_t *neww);
/* The plots in plots_dir under a "## title" heading, linked as plots/NAME.png. */
void moe_report_plots(FILE *f, const char *plots_dir, const char *title);

#endif
