/* Summary statistics of timing samples. */
#ifndef MOE_STATS_H
#define MOE_STATS_H

#include <stddef.h>

struct moe_summary {
	size_t n;
	double p50, p90, p99, min, max, mean, stdev;
};

/* Percentiles by linear interpolation between order statistics (type 7, as numpy's default). */
void moe_summarize(const double *v, size_t n, struct moe_summary *s);
double moe_percentile_sorted(const double *sorted, size_t n, double q);

#include <jansson.h>
/* Summary of a JSON array of numbers (run.json's samples). */
void moe_summarize_json(const json_t *array, struct moe_summary *s);

#endif
