/* Comparing two runs: per case and phase, medians, change, a Mann-Whitney U p-value and a bootstrap
 * confidence interval of the ratio of medians, and a verdict. */
#ifndef MOE_COMPARE_H
#define MOE_COMPARE_H

#include <jansson.h>
#include <stddef.h>
#include <stdio.h>

struct moe_compare_opts {
	double alpha;      /* significance level of the U test (default 0.01) */
	double threshold;  /* smallest change that counts, in percent (default 3) */
	double noise;      /* a 95 % interval of the ratio wider than this, in percent, is noisy (default 20) */
	int force;         /* compare runs from different environments */
	int ignore_load;   /* --ignore-load: verdicts as if neither run was oversubscribed or loaded */
	const char *phases; /* comma-separated, default "total" */
	/* run-to-run noise from the history, {"DIGEST\tPHASE": percent}; NULL or a missing key: none known.
	 * A change inside a case's band is not a regression, however significant within the run pair. */
	json_t *bands;
};

/* The band of a case and phase from the medians of earlier runs: BAND_K times the robust relative standard
 * deviation (1.4826 MAD / median), in percent; BAND_K = 3 sqrt(2) because both runs of a pair carry that noise.
 * Needs at least MOE_BAND_MIN_RUNS values, else returns 0 (unknown). */
#define MOE_BAND_MIN_RUNS 5
double moe_noise_band(const double *medians, size_t n);

/* Two-sided p-value of the Mann-Whitney U test (normal approximation with tie and continuity
 * corrections); *u receives U of the first sample. */
double moe_mann_whitney(const double *a, size_t na, const double *b, size_t nb, double *u);
/* 95 % percentile bootstrap interval of median(b) / median(a) over `reps` resamples (seeded). */
void moe_bootstrap_ratio(const double *a, size_t na, const double *b, size_t nb, int reps, unsigned long long seed,
			 double *lo, double *hi);
/* "faster", "slower", "same" or "noisy" for one comparison; band_pct is the case's run-to-run noise (0: none). */
const char *moe_verdict(double p, double change_pct, double lo, double hi, double band_pct,
			const struct moe_compare_opts *o);

/* route, dispatch, expert, combine, tp_merge, fetch_wait, total */
int moe_phase_known(const char *phase);
/* Compare validated run.json documents. Cases are matched by digest and name; every case of either run
 * is compared or named in "problems" (failed/errored/skipped in a run, missing, parameters differ, no
 * samples), and nothing compared is a problem too. Returns {"rows", "problems", "env_diff",
 * "regressions", "incomplete", "compared", "thresholds"}; NULL with err set when the environments
 * differ (unless force) or a phase is unknown. */
json_t *moe_compare_runs(json_t *base, json_t *neww, const struct moe_compare_opts *o, char *err, size_t errlen);
/* The environment fields that must match for a comparison to mean anything. */
json_t *moe_env_fingerprint(json_t *run);
/* The table, one "# not compared" line per problem, and the summary line. */
void moe_compare_print(FILE *f, json_t *report);
/* "N regressions; all M case-phases compared" or "INCOMPLETE: ..." */
void moe_compare_summary(char *buf, size_t len, json_t *report);
/* MOE_EXIT_INCOMPLETE when a problem was found, else MOE_EXIT_FAIL on a regression, else MOE_EXIT_OK. */
int moe_compare_exit(json_t *report);

/* The compare and history commands (history.c). */
int moe_cmd_compare(int argc, char **argv);
int moe_cmd_history(int argc, char **argv);
int moe_cmd_report(int argc, char **argv);

#endif
