/* Summary statistics: percentiles, mean, sample standard deviation. */
#include "stats.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static int cmp_dbl(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

double moe_percentile_sorted(const double *s, size_t n, double q)
{
	if (n == 0)
		return NAN;
	double h = (double)(n - 1) * q;
	size_t lo = (size_t)floor(h), hi = lo + 1 < n ? lo + 1 : lo;
	return s[lo] + (h - (double)lo) * (s[hi] - s[lo]);
}

void moe_summarize(const double *v, size_t n, struct moe_summary *s)
{
	memset(s, 0, sizeof(*s));
	s->n = n;
	if (!n) {
		s->p50 = s->p90 = s->p99 = s->min = s->max = s->mean = s->stdev = NAN;
		return;
	}
	double *c = malloc(n * sizeof(double));
	if (!c)
		abort();
	memcpy(c, v, n * sizeof(double));
	qsort(c, n, sizeof(double), cmp_dbl);
	s->p50 = moe_percentile_sorted(c, n, 0.50);
	s->p90 = moe_percentile_sorted(c, n, 0.90);
	s->p99 = moe_percentile_sorted(c, n, 0.99);
	s->min = c[0];
	s->max = c[n - 1];
	double sum = 0;
	for (size_t i = 0; i < n; i++)
		sum += c[i];
	s->mean = sum / (double)n;
	double ss = 0;
	for (size_t i = 0; i < n; i++)
		ss += (c[i] - s->mean) * (c[i] - s->mean);
	s->stdev = n > 1 ? sqrt(ss / (double)(n - 1)) : 0.0;
	free(c);
}

void moe_summarize_json(const json_t *array, struct moe_summary *s)
{
	size_t n = json_array_size(array);
	double *v = malloc((n ? n : 1) * sizeof(double));
	if (!v)
		abort();
	for (size_t i = 0; i < n; i++)
		v[i] = json_number_value(json_array_get(array, i));
	moe_summarize(v, n, s);
	free(v);
}
