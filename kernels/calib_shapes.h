/* The expert shapes `calibrate` times, shared by the CUDA calibrate and the PyTorch anchors it runs. */
#ifndef MOE_CALIB_SHAPES_H
#define MOE_CALIB_SHAPES_H

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "rng.h"

/* One grouped-experts case: ne experts of H x F (swiglu), rows per expert on average. unequal spreads the
 * rows linearly from half to one and a half times the mean (what routed tokens look like, without a router),
 * keeping the total ne * rows so that the FLOPs equal the equal-rows case's. */
struct moe_calib_shape {
	const char *name;
	int64_t ne, rows, h, f;
	int unequal;
};

/* ep = 8 shapes: 8192 tokens per rank, then 1024 (fewer rows than the per-expert loop needs), and all 256
 * DeepSeek-V3 experts on one GPU at 4096 tokens x top-8 (128 rows each) */
static const struct moe_calib_shape moe_calib_shapes[] = {
	{"qwen3-30b-a3b", 16, 4096, 2048, 768, 0},
	{"deepseek-v3", 32, 2048, 7168, 2048, 0},
	{"qwen3-30b-a3b-512rows", 16, 512, 2048, 768, 0},
	{"deepseek-v3-256rows", 32, 256, 7168, 2048, 0},
	{"deepseek-v3-256experts-128rows", 256, 128, 7168, 2048, 0},
	{"qwen3-30b-a3b-unequal", 16, 4096, 2048, 768, 1},
	{"deepseek-v3-unequal", 32, 2048, 7168, 2048, 1},
	{"qwen3-30b-a3b-512rows-unequal", 16, 512, 2048, 768, 1},
	{"deepseek-v3-256rows-unequal", 32, 256, 7168, 2048, 1},
	{"deepseek-v3-256experts-128rows-unequal", 256, 128, 7168, 2048, 1},
};
#define MOE_CALIB_NSHAPES ((int)(sizeof(moe_calib_shapes) / sizeof(moe_calib_shapes[0])))

/* Rows of each expert; what the rounding down lost (under one row per expert) goes one row each to the first
 * experts, so that the total is ne * rows. The order is interleaved (small, large, ...) so that neighbouring
 * experts differ, as routed ones do. */
static inline void moe_calib_counts(const struct moe_calib_shape *s, int64_t *counts)
{
	int64_t total = 0;
	for (int64_t j = 0; j < s->ne; j++) {
		int64_t r = s->rows;
		if (s->unequal && s->ne > 1) {
			int64_t rank = j % 2 ? s->ne - 1 - j / 2 : j / 2; /* 0, ne-1, 1, ne-2, ... */
			r = s->rows / 2 + s->rows * rank / (s->ne - 1);
		}
		counts[j] = r;
		total += r;
	}
	for (int64_t j = 0; j < s->ne * s->rows - total; j++)
		counts[j]++;
}

/* Router-like imbalance with the same total: each row picks expert j with probability proportional to
 * 1 / (1 + rank_j)^0.8, ranks a fixed shuffle of the experts (seeded), so a few experts are hot (the hottest of
 * 16 gets about 3x the mean) and some may get none. */
static inline void moe_calib_zipf_counts(int64_t ne, int64_t total, int64_t *counts)
{
	double *cdf = (double *)malloc(ne * sizeof(double)), sum = 0;
	int64_t *rank = (int64_t *)malloc(ne * 8);
	for (int64_t j = 0; j < ne; j++)
		rank[j] = j;
	for (int64_t j = ne - 1; j > 0; j--) { /* Fisher-Yates, fixed seed */
		int64_t r = (int64_t)(moe_rng_u64(11, 31, 0, 0, (uint64_t)j) % (uint64_t)(j + 1)), tmp = rank[j];
		rank[j] = rank[r];
		rank[r] = tmp;
	}
	for (int64_t j = 0; j < ne; j++)
		cdf[j] = sum += pow(1.0 + (double)rank[j], -0.8);
	memset(counts, 0, ne * 8);
	for (int64_t i = 0; i < total; i++) {
		double u = moe_rng_unit(11, 32, 0, 0, (uint64_t)i) * sum;
		int64_t lo = 0, hi = ne - 1; /* the first expert whose cdf exceeds u */
		while (lo < hi) {
			int64_t mid = (lo + hi) / 2;
			if (cdf[mid] > u)
				hi = mid;
			else
				lo = mid + 1;
		}
		counts[lo]++;
	}
	free(cdf);
	free(rank);
}

#endif
