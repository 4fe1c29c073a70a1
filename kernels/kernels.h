/* Kernel backend interface: device math (router, bucketing, row moves, experts, combine) behind a vtable.
 * Backends know nothing of ranks; pointers named d_* live in the backend's memory. */
#ifndef MOE_KERNELS_H
#define MOE_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#include "moe.h"

#define MOE_BACKEND_ABI 2
#define MOE_MAX_MARKS 1024

struct moe_dev; /* opaque per-process backend state */

/* What the router needs to know; mirrors the scenario's router keys. */
struct moe_route_cfg {
	int64_t hidden, experts, topk, groups, topk_groups;
	int sigmoid;      /* 0 softmax, 1 sigmoid */
	int norm;         /* normalise top-K weights */
	float scale;      /* route_scale */
	const float *d_bias; /* per-expert selection bias, or NULL */
};

enum moe_ffn_kind { MOE_FFN_SWIGLU, MOE_FFN_SCALE, MOE_FFN_IDENTITY };

/* Weights of a contiguous range of experts: expert j of the range has W1 rows at d_w1[j] etc.
 * Pointers per expert allow local and fetched (DWDP) weights to be used in place. */
struct moe_ffn_cfg {
	enum moe_ffn_kind kind;
	int64_t hidden, ffn;
	int64_t nexperts;      /* experts in this call */
	int64_t first_expert;  /* global id of the first, for scale mode */
	const moe_bf16 *const *d_w1; /* nexperts pointers to F x H */
	const moe_bf16 *const *d_w3; /* F x H */
	const moe_bf16 *const *d_w2; /* H x F */
};

struct moe_backend_ops {
	int abi;
	const char *name;
	int (*init)(struct moe_dev **dev, int gpu);
	void (*fini)(struct moe_dev *dev);
	/* memory */
	void *(*alloc)(struct moe_dev *dev, size_t bytes);
	void (*free)(struct moe_dev *dev, void *p);
	int (*h2d)(struct moe_dev *dev, void *d_dst, const void *src, size_t bytes);
	int (*d2h)(struct moe_dev *dev, void *dst, const void *d_src, size_t bytes);
	int (*d2d)(struct moe_dev *dev, void *d_dst, const void *d_src, size_t bytes);
	int (*memset)(struct moe_dev *dev, void *d_dst, int byte, size_t bytes);
	int (*sync)(struct moe_dev *dev);
	/* Router: x (n x H, bf16) and Wg (E x H) -> idx (n x K) and w (n x K, fp32). Ties go to the lower id. */
	int (*route)(struct moe_dev *dev, const struct moe_route_cfg *cfg, const moe_bf16 *d_x, int64_t n,
		     const moe_bf16 *d_wg, int32_t *d_idx, float *d_w);
	/* Stable counting sort. Item i goes to bucket (key[i] - key_off) / key_div when key[i] >= key_off and that
	 * bucket is in [0, nb); otherwise it is dropped (d_pos[i] = -1): negative keys are pads, keys past the
	 * range belong to another rank. counts[nb] (host) receives the bucket sizes, d_pos[i] the position of
	 * item i in bucket-major order. */
	int (*bucket)(struct moe_dev *dev, const int32_t *d_key, int64_t m, int32_t key_off, int32_t key_div,
		      int64_t nb, int64_t *counts, int32_t *d_pos);
	/* Row moves (h bf16 each): scatter dst[pos[i]] = src[i / src_div] (pos < 0 skipped; src_div = K sends
	 * one token row for each of its K slots); gather dst[i] = src[idx[i]] (idx < 0 writes zeros). */
	int (*scatter_rows)(struct moe_dev *dev, const moe_bf16 *d_src, const int32_t *d_pos, int64_t m,
			    int64_t src_div, int64_t h, moe_bf16 *d_dst);
	/* dst[pos[i]] = src[i] for 32-bit values (pos < 0 skipped). */
	int (*scatter_i32)(struct moe_dev *dev, const int32_t *d_src, const int32_t *d_pos, int64_t m, int32_t *d_dst);
	int (*gather_rows)(struct moe_dev *dev, const moe_bf16 *d_src, const int32_t *d_idx, int64_t m, int64_t h,
			   moe_bf16 *d_dst);
	/* Experts over rows already in expert-major order: counts[j] (host) rows for expert j of cfg.
	 * d_scale (per row, fp32) multiplies the input first when not NULL (score_before_experts). */
	int (*ffn)(struct moe_dev *dev, const struct moe_ffn_cfg *cfg, const moe_bf16 *d_x, const int64_t *counts,
		   const float *d_scale, moe_bf16 *d_out);
	/* Combine: acc = base[t] (or 0); acc = fma(w[t,k], rows[slot[t,k]], acc) for k = 0..K-1 in order, fp32,
	 * slot < 0 skipped. When scaled_before != 0 the weights are not applied again (acc += row: the experts
	 * already saw w*x). The result goes to d_out as bf16, or to d_out_f32 unrounded (the other is NULL). */
	int (*combine)(struct moe_dev *dev, const moe_bf16 *d_rows, const int32_t *d_slot, const float *d_w,
		       int64_t n, int64_t k, int64_t h, const float *d_base, int scaled_before, moe_bf16 *d_out,
		       float *d_out_f32);
	/* out = bf16(base + s) (or bf16(s) when d_base is NULL) over n values. */
	int (*finish)(struct moe_dev *dev, const float *d_s, const float *d_base, int64_t n, moe_bf16 *d_out);
	/* out = bf16(a + b) elementwise over n values (the residual between layers). */
	int (*add)(struct moe_dev *dev, const moe_bf16 *d_a, const moe_bf16 *d_b, int64_t n, moe_bf16 *d_out);
	/* Widen n bf16 values to fp32 (for the combine's base term). */
	int (*widen)(struct moe_dev *dev, const moe_bf16 *d_src, int64_t n, float *d_dst);
	/* Cache flush before a timed iteration. */
	int (*flush_cache)(struct moe_dev *dev);
	/* Optional (NULL: the caller generates on the host and uploads): the rows x cols block of a generated
	 * tensor, element (r, c) = bf16((2 * unit(seed, tensor, layer, row0 + r, c) - 1) * scale), exactly
	 * as the host generator makes it. */
	int (*generate)(struct moe_dev *dev, uint64_t seed, uint32_t tensor, uint32_t layer, uint64_t row0, int64_t rows,
			int64_t cols, double scale, moe_bf16 *d_dst);
	/* Optional device timers (NULL: the caller synchronises and reads the host clock): record timestamp
	 * `slot` (0 .. MOE_MAX_MARKS-1) on the stream; after a sync, the microseconds between two of them. */
	int (*mark)(struct moe_dev *dev, int slot);
	double (*elapsed_us)(struct moe_dev *dev, int from, int to);
	/* Bytes of memory this backend's allocations come from (the GPU's, or the host's RAM), for the
	 * preflight that refuses a case that cannot fit before anything is allocated. */
	size_t (*mem_total)(struct moe_dev *dev);
	/* Optional test aid (--inject-delay): keep the device busy for `us` microseconds, in stream order. */
	int (*spin)(struct moe_dev *dev, double us);
};

#define MOE_BACKEND(name) extern const struct moe_backend_ops moe_backend_##name;
#include "backends.def"
#undef MOE_BACKEND

/* Look up a backend by name; NULL when it was not built in. */
const struct moe_backend_ops *moe_backend_find(const char *name);

#endif
