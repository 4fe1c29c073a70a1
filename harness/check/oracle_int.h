/* Internals shared by the oracle's files: its own generator, routing reference and expert reference. */
#ifndef MOE_ORACLE_INT_H
#define MOE_ORACLE_INT_H

#include <stddef.h>
#include <stdint.h>

#include "moe.h"
#include "oracle.h"
#include "params.h"
#include "rng.h"

#define ORC_U32 0x1p-24 /* fp32 unit roundoff */
#define ORC_UBF 0x1p-8  /* bf16 unit roundoff */
#define ORC_LAMBDA 4.0  /* probabilistic factor for independent rounding errors (docs/VERIFICATION.md) */

/* One row of a tensor as the specification draws it (DESIGN §2), hoisting the row's part of the key. */
void orc_gen_row(const struct moe_params *p, enum moe_tensor t, uint32_t layer, uint64_t row, int64_t cols,
		 double *out);
/* The half-width of the uniform draws of a tensor (1/sqrt of its reduction width for weights). */
double orc_scale(const struct moe_params *p, enum moe_tensor t);
/* Selection bias of expert e, as the specification draws it. */
double orc_bias(const struct moe_params *p, uint32_t layer, int64_t e);
/* Synthetic routing of global id g (uniform, balanced, zipf, hot; trace ids taken from trace). */
void orc_synth(const struct moe_params *p, uint32_t layer, uint64_t g, const struct moe_trace *trace, int32_t *idx,
	       float *w);
/* CPUs this process may run on. */
int orc_ncpu(void);

/* Router reference for n rows (n x H doubles): logits and their fp32 error bounds, n x E each. */
int orc_logits(const struct moe_params *p, uint32_t layer, int64_t n, const double *x, double *z, double *dz);
/* Check one router-routed row (distinct ids in range) against its reference logits z and bounds dz; exact: the
 * row is all zeros, so its fp32 scores are known bit for bit. Fills wref/wbound (K entries) when not NULL.
 * Returns 0 or -1 with why. */
int orc_check_router(const struct moe_params *p, uint32_t layer, const double *z, const double *dz, int exact,
		     const int32_t *idx, const float *w, double *wref, double *wbound, char *why, size_t len);

/* Expert reference: yref (n x H) and per-element bounds yb (n x H) for n rows u (n x H) with the rank's routing. */
int orc_experts(const struct moe_params *p, uint32_t layer, int64_t n, const double *u, const int32_t *idx,
		const float *w, double *yref, double *yb);

#endif
