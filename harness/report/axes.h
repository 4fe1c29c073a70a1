/* Comparison within one run: cases that differ along exactly one parameter, each against a baseline. */
#ifndef MOE_AXES_H
#define MOE_AXES_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* Bootstrap resamples per ratio, and the confidence level of its interval. */
#define MOE_AXES_RESAMPLES 2000
#define MOE_AXES_LEVEL 0.95
/* A ratio whose interval reaches into [1 - band, 1 + band] is "not separable": a 2 % difference is
 * below what repeated host runs reproduce, so calling it a win would be noise. */
#define MOE_AXES_BAND 0.02
#define MOE_AXES_SEED 0x6d6f6561786573ull

/* Ratio of the medians median(num) / median(den), and a percentile bootstrap interval of it: both
 * sample sets resampled with replacement, independently, `resamples` times from a generator seeded
 * with `seed` (the same inputs give the same interval). Returns 0, or -1 when a set is empty or the
 * denominator's median is not above zero. */
int moe_axes_ratio_ci(const double *num, size_t nnum, const double *den, size_t nden, int resamples, uint64_t seed,
		      double *ratio, double *lo, double *hi);

/* -1: the row is faster (its interval lies below 1 - band), +1: the baseline is faster, 0: not separable. */
int moe_axes_separate(double lo, double hi);

/* The comparisons of a run's cases (run.json's "cases"): for every parameter, the cases whose resolved
 * params are equal on every other key form a group when they hold at least two values of it; the first
 * case in run order is the baseline. Only cases with verdict ok or unchecked and 'total' samples take
 * part (a wrong answer is no win). Returns a new array (run.json's "comparisons"), maybe empty. */
json_t *moe_axes_compare(json_t *cases);

/* "# strategy comparison" block: one line per row. Nothing when there are no comparisons. */
void moe_axes_print(FILE *f, json_t *comparisons);

/* dir/axes.tsv: one line per group, row and phase (columns in docs/RESULTS.md). Returns 0 or -1 (logged). */
int moe_axes_write_tsv(const char *dir, json_t *comparisons);

#endif
