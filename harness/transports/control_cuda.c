/* The control plane's opening for the CUDA transports (ipc, nccl): both run on it with the cuda backend,
 * whose device and stream they share. Built only with CUDA. */
#include <cuda_runtime.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_iface.h"
#include "moe.h"
#include "shmctl.h"

int moe_shmc_cuda_open(struct moe_comm **out, const struct moe_comm_info *info, const char *who, size_t impl_bytes,
		       const struct moe_shm_data *data)
{
	*out = NULL;
	if (strcmp(info->be->name, "cuda")) {
		moe_err("%s transport needs the cuda backend, not %s", who, info->be->name);
		return MOE_ERR_UNSUPPORTED;
	}
	struct moe_comm *c = calloc(1, sizeof(*c));
	struct moe_cuda_link *l = calloc(1, impl_bytes);
	if (!c || !l) {
		free(c);
		free(l);
		return MOE_ERR_NOMEM;
	}
	*out = c;
	c->impl = l;
	c->data = data;
	MOE_CHECK(moe_shmc_setup(c, info));
	l->dev = info->dev;
	l->gpu = moe_cuda_device(info->dev);
	l->stream = moe_cuda_stream(info->dev);
	if (cudaSetDevice(l->gpu) != cudaSuccess) {
		moe_err("%s transport: cudaSetDevice(%d) failed", who, l->gpu);
		return MOE_ERR_SYSTEM;
	}
	return MOE_OK;
}
