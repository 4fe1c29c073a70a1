/* MOE_CU: check a CUDA runtime call in the CUDA transports; log it with where, return the status up. */
#ifndef MOE_CUDACHECK_H
#define MOE_CUDACHECK_H

#include <cuda_runtime.h>

#include "moe.h"

#define MOE_CU(call)                                                                                    \
	do {                                                                                            \
		cudaError_t e_ = (call);                                                                \
		if (e_ != cudaSuccess) {                                                                \
			moe_err("%s failed: %s (%s:%d)", #call, cudaGetErrorString(e_), __FILE__, __LINE__); \
			return MOE_ERR_SYSTEM;                                                          \
		}                                                                                       \
	} while (0)

#endif
