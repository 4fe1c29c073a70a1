/* A case's aggregates over its ranks: per-iteration maximum, percentiles, bandwidths, rooflines. */
#ifndef MOE_AGGREGATE_H
#define MOE_AGGREGATE_H

#include <jansson.h>

#include "params.h"

/* Adds "phases" (with total_min, the per-iteration minimum over ranks), "samples", "period" (steady state),
 * "slowest_rank", "bytes" and, where they apply, "dwdp" and "roofline" to
 * case_json from the ranks' RESULT records (results[0..nranks-1]). gemm_TFLOPs and copy_GBps are the
 * rooflines of `calibrate` (0: unknown); ngpus is the number of GPUs of the plan. */
void moe_aggregate_case(json_t *case_json, json_t *const *results, int nranks, const struct moe_params *p,
			int ngpus, double gemm_TFLOPs, double copy_GBps);

#endif
