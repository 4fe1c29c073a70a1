/* Deterministic workload: tokens, weights, biases and synthetic routing from the counter RNG. */
#ifndef MOE_WORKLOAD_H
#define MOE_WORKLOAD_H

#include <stdint.h>

#include "moe.h"
#include "params.h"
#include "rng.h"

/* One generated element, already rounded to bf16. Scales keep activations O(1) through layers. */
moe_bf16 moe_gen_elem(const struct moe_params *p, enum moe_tensor t, uint32_t layer, uint64_t row, uint64_t col);
/* The scale of a tensor's uniform [-1, 1) draws (1/sqrt of the reduction width for weights). */
double moe_tensor_scale(const struct moe_params *p, enum moe_tensor t);
/* rows x cols block of a tensor starting at row0, row-major, bf16. */
void moe_gen_block(const struct moe_params *p, enum moe_tensor t, uint32_t layer, uint64_t row0, int64_t rows,
		   int64_t cols, moe_bf16 *out);
/* Selection bias of expert e (fp32; 0 when route_bias is off). */
float moe_gen_bias(const struct moe_params *p, uint32_t layer, int64_t e);

/* Synthetic routing of one token (global id g): K expert ids (distinct) and fp32 weights
 * (normalised and scaled as route_norm/route_scale say). Not for routing = router or trace. */
void moe_route_synth(const struct moe_params *p, uint32_t layer, uint64_t g, int32_t *idx, float *w);

/* A routing trace: per token, K expert ids (repeats allowed). */
struct moe_trace {
	int64_t ntokens;
	int64_t topk;
	int32_t *ids; /* ntokens*topk */
};
/* A trace file larger than this is refused: every rank holds it whole (4 bytes an id), and a device or an
 * endless file must not spin until the case timeout */
#define MOE_TRACE_MAX_BYTES (1LL << 30)
/* Load a trace file (format in docs/TRACE.md): a regular file of at most MOE_TRACE_MAX_BYTES (FIFOs and
 * devices refused). Returns 0, or -1 with "file:line: reason" in err. */
int moe_trace_load(const char *path, int64_t experts, struct moe_trace *tr, char *err, size_t errlen);
void moe_trace_free(struct moe_trace *tr);

#endif
