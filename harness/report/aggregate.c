/* A case's aggregates over its ranks: the per-iteration maximum of each phase, its percentiles, bandwidths. */
#include "aggregate.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "moe.h"
#include "stats.h"

/* Phases, the iteration total, and "xfer": the time spent inside transport data calls (part of dispatch and combine). */
static const char *const timed_phases[] = {"route", "dispatch", "expert", "combine", "tp_merge", "fetch_wait", "total", "xfer",
					   "fetch"};

/* the medians the bandwidths need, and the per-iteration dispatch+combine time */
struct phase_medians {
	size_t iters;
	double *comm;
	double xfer_p50, fetch_p50, wait_p50;
};

/* Per-iteration maximum (or with lowest, minimum) over ranks of one phase, from the ranks' raw samples. */
static double *iter_over_ranks(json_t *const *results, int n, const char *phase, size_t *iters, int lowest)
{
	double *out = NULL;
	*iters = 0;
	for (int r = 0; r < n; r++) {
		json_t *a = json_object_get(json_object_get(results[r], "samples_us"), phase);
		if (!a)
			return NULL;
		size_t m = json_array_size(a);
		int first = !out;
		if (!out) {
			out = moe_xcalloc(m, sizeof(double));
			*iters = m;
		}
		for (size_t i = 0; i < m && i < *iters; i++) {
			double v = json_real_value(json_array_get(a, i));
			if (first || (lowest ? v < out[i] : v > out[i]))
				out[i] = v;
		}
	}
	return out;
}

static json_t *summary_json(const struct moe_summary *s)
{
	return json_pack("{s:f,s:f,s:f,s:f,s:f,s:f,s:f,s:I}", "p50_us", s->p50, "p90_us", s->p90, "p99_us", s->p99,
			 "min_us", s->min, "max_us", s->max, "mean_us", s->mean, "stdev_us", s->stdev, "n",
			 (json_int_t)s->n);
}

/* "phases" (percentiles of the per-iteration maximum) and "samples" (that maximum) for every timed phase */
static void phase_aggregates(json_t *cj, json_t *const *results, int n, struct phase_medians *pm)
{
	json_t *phases = json_object(), *samples = json_object();
	for (size_t k = 0; k < MOE_ARRAY_SIZE(timed_phases); k++) {
		double *m = iter_over_ranks(results, n, timed_phases[k], &pm->iters, 0);
		if (!m)
			continue;
		struct moe_summary s;
		moe_summarize(m, pm->iters, &s);
		json_object_set_new(phases, timed_phases[k], summary_json(&s));
		json_t *a = json_array();
		for (size_t i = 0; i < pm->iters; i++)
			json_array_append_new(a, json_real(m[i]));
		json_object_set_new(samples, timed_phases[k], a);
		if (!strcmp(timed_phases[k], "xfer"))
			pm->xfer_p50 = s.p50;
		if (!strcmp(timed_phases[k], "fetch"))
			pm->fetch_p50 = s.p50;
		if (!strcmp(timed_phases[k], "fetch_wait"))
			pm->wait_p50 = s.p50;
		if (!strcmp(timed_phases[k], "dispatch") || !strcmp(timed_phases[k], "combine")) {
			if (!pm->comm)
				pm->comm = moe_xcalloc(pm->iters, sizeof(double));
			for (size_t i = 0; i < pm->iters; i++)
				pm->comm[i] += m[i];
		}
		free(m);
	}
	/* the fastest rank of each iteration too: with the maximum it bounds how far the ranks drift apart */
	size_t iters;
	double *m = iter_over_ranks(results, n, "total", &iters, 1);
	if (m) {
		struct moe_summary s;
		moe_summarize(m, iters, &s);
		json_object_set_new(phases, "total_min", summary_json(&s));
		json_t *a = json_array();
		for (size_t i = 0; i < iters; i++)
			json_array_append_new(a, json_real(m[i]));
		json_object_set_new(samples, "total_min", a);
		free(m);
	}
	json_object_set_new(cj, "phases", phases);
	json_object_set_new(cj, "samples", samples);
}

/* The steady-state period (iterations back to back, no barrier): per rank, over the ranks. */
static void period_aggregate(json_t *cj, json_t *const *results, int n)
{
	double lo = INFINITY, hi = -INFINITY, sum = 0;
	int have = 0;
	for (int r = 0; r < n; r++) {
		json_t *v = json_object_get(results[r], "period_us");
		if (!v)
			continue;
		double x = json_number_value(v);
		lo = x < lo ? x : lo;
		hi = x > hi ? x : hi;
		sum += x;
		have++;
	}
	if (have)
		json_object_set_new(cj, "period", json_pack("{s:f,s:f,s:f,s:i}", "max_us", hi, "min_us", lo, "mean_us",
							     sum / have, "ranks", have));
}

/* dwdp: fetch bandwidth per rank, and how much of the fetch the expert compute hid */
static void dwdp_aggregates(json_t *cj, json_int_t fetched, int n, const struct phase_medians *pm)
{
	double fetch_p50 = pm->fetch_p50, wait_p50 = pm->wait_p50;
	double bw = fetch_p50 > 0 ? (double)fetched / n / fetch_p50 * 1e-3 : 0;
	double hidden = fetch_p50 > 0 ? 1.0 - (wait_p50 == wait_p50 ? wait_p50 : 0) / fetch_p50 : 0;
	json_object_set_new(cj, "dwdp", json_pack("{s:I,s:f,s:f,s:f,s:f}", "bytes_fetched_per_rank",
						   (json_int_t)(fetched / n), "fetch_p50_us", fetch_p50,
						   "exposed_wait_p50_us", wait_p50 == wait_p50 ? wait_p50 : 0.0,
						   "fetch_GBps", bw, "hidden_fraction", hidden < 0 ? 0.0 : hidden));
}

/* against the rooflines of `calibrate`, per GPU: ranks sharing a GPU run at the same time */
static void roofline(json_t *cj, json_t *const *results, int n, const struct moe_params *p, int ngpus,
		     double gemm_TFLOPs, double copy_GBps, json_int_t logical, double comm_p50)
{
	json_int_t slots = 0;
	for (int r = 0; r < n; r++)
		slots += json_integer_value(json_object_get(json_object_get(results[r], "slots"), "computed"));
	double expert_p50 = json_number_value(json_object_get(json_object_get(json_object_get(cj, "phases"), "expert"), "p50_us"));
	int gpus = p->backend == MOE_BACKEND_CUDA ? MOE_MAX(1, MOE_MIN(n, ngpus)) : 0;
	if (!gpus || gemm_TFLOPs <= 0 || p->expert != MOE_EXPERT_SWIGLU || !(expert_p50 > 0))
		return;
	double flops = (double)slots * 6.0 * (double)p->hidden * (double)p->ffn; /* three GEMMs a slot */
	double tf = flops / gpus / expert_p50 * 1e-6;
	json_object_set_new(cj, "roofline", json_pack("{s:f,s:f,s:f,s:f}", "expert_TFLOPs", tf, "expert_pct_of_gemm",
						    100 * tf / gemm_TFLOPs, "comm_GBps_per_gpu",
						    comm_p50 > 0 ? 2.0 * (double)logical / gpus / comm_p50 * 1e-3 : 0.0,
						    "comm_pct_of_copy",
						    comm_p50 > 0 ? 100 * 2.0 * (double)logical / gpus / comm_p50 * 1e-3 / copy_GBps
								 : 0.0));
}

void moe_aggregate_case(json_t *cj, json_t *const *results, int n, const struct moe_params *p, int ngpus,
			double gemm_TFLOPs, double copy_GBps)
{
	struct phase_medians pm = {0, NULL, NAN, NAN, NAN};
	phase_aggregates(cj, results, n, &pm);
	period_aggregate(cj, results, n);
	/* the slowest rank: highest median total */
	int slow = -1;
	double slow_p50 = -1;
	json_int_t logical = 0, wire = 0, fetched = 0;
	for (int r = 0; r < n; r++) {
		struct moe_summary s;
		moe_summarize_json(json_object_get(json_object_get(results[r], "samples_us"), "total"), &s);
		if (s.p50 > slow_p50) {
			slow_p50 = s.p50;
			slow = r;
		}
		json_t *b = json_object_get(results[r], "bytes");
		logical += json_integer_value(json_object_get(b, "logical"));
		wire += json_integer_value(json_object_get(b, "wire"));
		fetched += json_integer_value(json_object_get(b, "fetched"));
	}
	if (fetched)
		dwdp_aggregates(cj, fetched, n, &pm);
	json_object_set_new(cj, "slowest_rank", json_pack("{s:i,s:f}", "rank", slow, "total_p50_us", slow_p50));
	double comm_p50 = NAN;
	if (pm.comm) {
		struct moe_summary s;
		moe_summarize(pm.comm, pm.iters, &s);
		comm_p50 = s.p50;
		free(pm.comm);
	}
	/* per-rank average bytes over the p50 of dispatch+combine: GB/s (1e9 bytes per second) */
	double alg = comm_p50 > 0 ? (double)logical / n / comm_p50 * 1e-3 : 0;
	double bus = comm_p50 > 0 ? (double)wire / n / comm_p50 * 1e-3 : 0;
	/* the transport alone: wire bytes per rank over the time inside its data calls */
	double xbw = pm.xfer_p50 > 0 ? (double)wire / n / pm.xfer_p50 * 1e-3 : 0;
	json_object_set_new(cj, "bytes", json_pack("{s:I,s:I,s:f,s:f,s:f,s:f}", "logical", logical, "wire", wire,
						    "comm_p50_us", comm_p50 == comm_p50 ? comm_p50 : 0.0, "algbw_GBps",
						    alg, "busbw_GBps", bus, "xfer_busbw_GBps", xbw));
	roofline(cj, results, n, p, ngpus, gemm_TFLOPs, copy_GBps, logical, comm_p50);
}
