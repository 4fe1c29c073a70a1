/* shm transport: ranks on one host exchange through the launcher's shared segment (one copy per byte,
 * receivers pull from the sender's symmetric buffer); the barriers and collectives are the control
 * plane's (control.c), this file says only how bytes move: memcpy. */
#include <stdlib.h>
#include <string.h>

#include "moe.h"
#include "shmctl.h"
#include "status.h"
#include "transport.h"

static int host_copy(struct moe_comm *c, void *dst, const void *src, size_t n)
{
	(void)c;
	memcpy(dst, src, n);
	return MOE_OK;
}

static int host_accumulate(struct moe_comm *c, float *dst, const float *src, size_t n)
{
	(void)c;
	for (size_t i = 0; i < n; i++)
		dst[i] += src[i];
	return MOE_OK;
}

static int host_settle(struct moe_comm *c)
{
	(void)c;
	return MOE_OK;
}

static const struct moe_shm_data host_data = {host_copy, host_accumulate, host_settle, host_copy, host_settle};

static int shm_init(struct moe_comm **out, const struct moe_comm_info *info)
{
	struct moe_comm *c = calloc(1, sizeof(*c));
	if (!c)
		return MOE_ERR_NOMEM;
	int rc = moe_shmc_setup(c, info);
	size_t need = moe_shm_ctl_bytes(info->nranks, info->dp) + (size_t)info->nranks * info->heap_per_rank;
	if (rc == MOE_OK && info->shm_bytes < need) {
		moe_err("shm transport: shared segment of %zu bytes, need %zu", info->shm_bytes, need);
		rc = MOE_ERR_SYSTEM;
	}
	if (rc != MOE_OK) {
		free(c->base);
		free(c);
		return rc;
	}
	char *heap = (char *)info->shm + moe_shm_ctl_bytes(info->nranks, info->dp);
	for (int r = 0; r < info->nranks; r++)
		c->base[r] = heap + (size_t)r * info->heap_per_rank;
	c->data = &host_data;
	*out = c;
	return MOE_OK;
}

static void shm_fini(struct moe_comm *c)
{
	free(c->base);
	free(c);
}

const struct moe_transport_ops moe_transport_shm = {
	.abi = MOE_TRANSPORT_ABI,
	.name = "shm",
	.init = shm_init,
	.fini = shm_fini,
	MOE_SHMC_OPS,
};
