/* Rooflines measured on this machine: copy bandwidth (and, on GPUs, GEMM rate). */
#ifndef MOE_CALIBRATE_H
#define MOE_CALIBRATE_H

#include <stddef.h>

struct moe_calibration {
	size_t copy_bytes;
	int copy_reps;
	double copy_GBps_p50; /* bytes copied per second, 1e9 units (bytes read + written is twice this) */
	double copy_GBps_max;
	int checksum;
};

/* memcpy of `bytes` between two touched buffers, reps times, one core. */
int moe_calibrate_host(size_t bytes, int reps, struct moe_calibration *out);

#endif
