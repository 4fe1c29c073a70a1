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

/* ll (low latency, GPU-initiated): one rank's view of the symmetric buffers the strategy writes into;
 * harness/strategies/ll.c fills it once per case. Each pointer array holds nranks entries in backend memory:
 * entry q is rank q's copy of the buffer as this process addresses it (a peer's device memory mapped by the
 * ipc transport, the launcher's segment for shm). Rows from source s to destination d land in d's
 * recv_*[s * cap + j]; within that block they are ordered by (local expert, token, slot). */
struct moe_ll_plan {
	int rank, nranks;
	int64_t hidden, topk, experts, epr; /* expert e lives on rank e / epr */
	int64_t cap;                        /* rows one source may send one destination per layer */
	int scaled;                         /* score_before_experts: the slot's weight travels with its row */
	moe_bf16 *const *recv_x;            /* [s * cap + j]: rows of H */
	int32_t *const *recv_e;             /* [s * cap + j]: local expert of the row */
	float *const *recv_w;               /* [s * cap + j]: weight (scaled only) */
	int32_t *const *recv_cnt;           /* [s * epr + e]: rows source s sent for local expert e */
	uint64_t *const *sig_disp;          /* [s]: epoch of the layer whose rows from s have all landed */
	moe_bf16 *const *ret_y;             /* [d * cap + j]: the output destination d wrote back for my row j to d */
	uint64_t *const *sig_ret;           /* [d]: epoch of the layer whose outputs from d have all landed */
	/* this rank's own state, backend memory */
	uint64_t *d_epoch; /* layers finished; the layer running signals *d_epoch + 1 */
	int64_t *d_stats;  /* accumulated across layers (zeroed by the strategy): see MOE_LL_STAT_* */
};
enum { MOE_LL_STAT_SENT, MOE_LL_STAT_SENT_REMOTE, MOE_LL_STAT_DROPPED, MOE_LL_STAT_EXPERT0 /* + local expert */ };

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
	/* --- optional from here on (NULL: not available with this backend) --- */
	/* Experts with row counts in backend memory (d_counts[j], int32, summing to at most max_rows): what ffn
	 * does, with no host round trip, so a layer using it can be captured. */
	int (*ffn_dev)(struct moe_dev *dev, const struct moe_ffn_cfg *cfg, const moe_bf16 *d_x, const int32_t *d_counts,
		       int64_t max_rows, const float *d_scale, moe_bf16 *d_out);
	/* ll dispatch, started by the device: each slot (t, k) with expert e = d_idx[t*K + k] >= 0 sends row t
	 * (and d_w[t*K + k] when scaled) into the owner's recv block for this rank, ordered by (local expert, t, k);
	 * then the counts, then the signal (*d_epoch + 1), to every rank, rows or not. Rows past cap are dropped and
	 * counted (MOE_LL_STAT_DROPPED). d_slot[t*K + k] receives owner * cap + j, or -1 (pad or dropped). */
	int (*ll_dispatch)(struct moe_dev *dev, const struct moe_ll_plan *pl, const moe_bf16 *d_x, int64_t n,
			   const int32_t *d_idx, const float *d_w, int32_t *d_slot);
	/* Wait on the device for every source's signal of this layer, then pack the rows expert-major into d_x
	 * (d_w when scaled): d_counts[e] rows of local expert e, by source then j; d_src[i] = s * cap + j of packed
	 * row i. d_x holds nranks * cap rows. Counts rows computed per expert into d_stats. */
	int (*ll_receive)(struct moe_dev *dev, const struct moe_ll_plan *pl, moe_bf16 *d_x, float *d_w, int32_t *d_counts,
			  int32_t *d_src);
	/* Write packed expert outputs back into their sources' ret_y blocks, then signal every source. */
	int (*ll_return)(struct moe_dev *dev, const struct moe_ll_plan *pl, const moe_bf16 *d_y, const int32_t *d_src,
			 const int32_t *d_counts);
	/* Wait on the device for every destination's return signal of this layer, then advance *d_epoch. The
	 * outputs are then in this rank's ret_y, which combine reads through d_slot. */
	int (*ll_wait_return)(struct moe_dev *dev, const struct moe_ll_plan *pl);
	/* Graphs: between capture_begin and capture_end the backend records what it is asked instead of running
	 * it; replay runs the recording (in stream order, without waiting for it). A host round trip asked for
	 * inside (d2h, bucket's host counts, sync) fails the capture with MOE_ERR_UNSUPPORTED. */
	int (*capture_begin)(struct moe_dev *dev);
	int (*capture_end)(struct moe_dev *dev, void **graph);
	int (*replay)(struct moe_dev *dev, void *graph);
	void (*graph_free)(struct moe_dev *dev, void *graph);
};

#define MOE_BACKEND(name) extern const struct moe_backend_ops moe_backend_##name;
#include "backends.def"
#undef MOE_BACKEND

/* Look up a backend by name; NULL when it was not built in. */
const struct moe_backend_ops *moe_backend_find(const char *name);

#endif
