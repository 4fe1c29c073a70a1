/* The host backend's ll ops and experts with device counts (host_ll.c), for host.c's ops table. */
#ifndef MOE_HOST_LL_H
#define MOE_HOST_LL_H

#include "kernels.h"

/* host.c: experts over rows in expert-major order with host counts (the backend's ffn op) */
int moe_host_ffn(struct moe_dev *dev, const struct moe_ffn_cfg *cfg, const moe_bf16 *d_x, const int64_t *counts,
		 const float *d_scale, moe_bf16 *d_out);

int moe_host_ffn_dev(struct moe_dev *dev, const struct moe_ffn_cfg *cfg, const moe_bf16 *d_x,
		     const int32_t *d_counts, int64_t max_rows, const float *d_scale, moe_bf16 *d_out);
int moe_host_ll_dispatch(struct moe_dev *dev, const struct moe_ll_plan *pl, const moe_bf16 *d_x, int64_t n,
			 const int32_t *d_idx, const float *d_w, int32_t *d_slot);
int moe_host_ll_receive(struct moe_dev *dev, const struct moe_ll_plan *pl, moe_bf16 *d_x, float *d_w,
			int32_t *d_counts, int32_t *d_src);
int moe_host_ll_return(struct moe_dev *dev, const struct moe_ll_plan *pl, const moe_bf16 *d_y,
		       const int32_t *d_src, const int32_t *d_counts);
int moe_host_ll_wait_return(struct moe_dev *dev, const struct moe_ll_plan *pl);

#endif
