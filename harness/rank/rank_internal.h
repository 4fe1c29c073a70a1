/* What the rank's steps share: the case as one rank runs it. Not for other rooms. */
#ifndef MOE_RANK_INTERNAL_H
#define MOE_RANK_INTERNAL_H

#include <jansson.h>
#include <stdint.h>

#include "counters.h"
#include "moe.h"
#include "params.h"
#include "strategy.h"
#include "workload.h"

enum inject_kind { INJ_NONE, INJ_CRASH, INJ_HANG, INJ_EXIT, INJ_OOM };

struct rank_run {
	struct moe_params p;
	struct moe_ctx ctx;
	int boot_fd;
	double mem_estimate; /* the preflight's lower bound of this rank's backend memory, bytes */
	char name[MOE_NAME_MAX];
	int inject_phase;
	enum inject_kind inject;
	int64_t corrupt_token, corrupt_col;
	char dump[MOE_PATH_MAX];
	int delay_phase;  /* test aid: --inject-delay PHASE:US */
	double delay_us;
	struct moe_counters ctr;
	long long ctr_phase[MOE_PH_COUNT][MOE_MAX_EVENTS];
	/* per timed iteration, per phase */
	double *samples[MOE_PH_COUNT];
	double *xfer;     /* per timed iteration: time inside transport data calls */
	double *fetch;    /* per timed iteration: dwdp weight fetch time (helper thread) */
	struct moe_slice sl; /* the rows this rank dispatches */
	int64_t n;        /* = sl.n */
	int64_t T, g0;    /* tokens of its DP group and the global id of the first */
	int64_t *gid;     /* per slice row: global id or a pad marker */
	struct moe_trace trace;
	/* device buffers per layer, kept for verification: the group's full input X and merged output Y
	 * (T rows, the same on every TP rank), the slice xs/ys (n rows) and its routing */
	moe_bf16 **X, **Y, **xs, **ys;
	int32_t **idx;
	float **w;
	float *base;      /* n x H fp32 shared-expert term */
	moe_bf16 *shared_y;
	void *merge_sym;  /* the partition's symmetric staging buffer */
	moe_bf16 *ypad;   /* T + pad rows (sp buffer / zero_token) */
	uint64_t digest_first; /* output digest after the first timed iteration */
	void *shm;        /* the case segment, shm_bytes long */
	size_t shm_bytes;
	int done;         /* the case ran to its end and the result was sent */
	/* graph = on (graph.c): the captured iteration, each layer's synthetic routing drawn once (NULL: drawn
	 * every iteration), the shared experts' row count on the device, and what the host counted while
	 * capturing (each replay starts from it) */
	void *graph;
	int capturing;    /* moe_phase neither syncs nor records marks */
	int32_t **g_idx;
	float **g_w;
	int32_t *shared_cnt;
	struct moe_rank_acct {
		struct moe_bytes bytes;
		double xfer_us, fetch_us;
		int64_t slots_sent, slots_computed, rows_dispatched, pad_dispatched;
		int64_t *expert_rows;
	} acct;
	double period_us; /* steady state: back-to-back iterations, elapsed / iters (NAN: not measured) */
};
/* phases.c: the running case, for moe_phase's fault injection and counters (NULL outside a case) */
extern struct rank_run *moe_rank_current;
/* phases.c: close the open phase; no phase runs until the next moe_phase */
void moe_rank_phase_end(struct moe_ctx *ctx);

/* rank.c: every layer of one iteration (what a graph captures), and one whole timed iteration */
int moe_rank_layers(struct rank_run *r);
int moe_rank_iteration(struct rank_run *r);
/* rank.c: layer's synthetic routing drawn on the host and uploaded into d_idx / d_w */
int moe_rank_route_host(struct rank_run *r, int layer, int32_t *d_idx, float *d_w);
/* rank.c: zero what one iteration counts on the host */
void moe_rank_iter_reset(struct moe_ctx *ctx);

/* graph.c: graph = on: draw the routing, prime, capture (MOE_OK or the rank's exit status) */
int moe_rank_graph_open(struct rank_run *r);
/* graph.c: the accounting of the host, saved and restored around replays and the steady-state batch */
void moe_rank_acct_save(struct rank_run *r);
void moe_rank_acct_restore(struct rank_run *r);
/* graph.c: the steady-state period, `iters` iterations back to back (MOE_OK or a status) */
int moe_rank_steady(struct rank_run *r);
void moe_rank_graph_free(struct rank_run *r);

/* setup.c: send the launcher an error message for the case's reason; returns MOE_ERR_SYSTEM */
int moe_rank_send_error(int fd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* setup.c: the case text into r->p and the test aids (inject, delay, dump, corrupt) */
int moe_rank_parse_case(struct rank_run *r, char *text);
/* setup.c: every DP group's tokens, this rank's slice and its rows' global ids, the routing trace */
int moe_rank_layout(struct rank_run *r);
/* setup.c: refuse a case that cannot fit, or whose BLAS buffers cannot; MOE_OK or the rank's exit status */
int moe_rank_preflight(struct rank_run *r, size_t heap);
int moe_rank_blas_room(struct rank_run *r);
/* setup.c: each layer's device buffers, and layer 0's input */
int moe_rank_alloc_layers(struct rank_run *r);

/* verify.c: FNV-1a over every layer's merged output: equal digests mean bit-identical outputs */
uint64_t moe_rank_output_digest(struct rank_run *r);
/* verify.c: check the last iteration (oracle, workspaces, repeat digest), dump it if asked, and send the
 * launcher the rank's result. Returns the rank's exit status. */
int moe_rank_report(struct rank_run *r, const struct moe_bytes *bytes);

#endif
