/* calibrate: the rooflines other figures are compared with. On the host: memcpy bandwidth of one core. */
#include "calibrate.h"

#include <stdlib.h>
#include <string.h>

#include "moe.h"
#include "stats.h"

int moe_calibrate_host(size_t bytes, int reps, struct moe_calibration *out)
{
	char *a = malloc(bytes), *b = malloc(bytes);
	if (!a || !b) {
		free(a);
		free(b);
		return MOE_ERR_NOMEM;
	}
	/* touch every page first so that page faults stay out of the timed copies */
	memset(a, 1, bytes);
	memset(b, 2, bytes);
	double *gbps = moe_xcalloc((size_t)reps, sizeof(double));
	for (int i = 0; i < reps; i++) {
		double t0 = moe_now_us();
		memcpy(i % 2 ? a : b, i % 2 ? b : a, bytes);
		double us = moe_now_us() - t0;
		gbps[i] = (double)bytes / us * 1e-3;
	}
	struct moe_summary s;
	moe_summarize(gbps, (size_t)reps, &s);
	out->copy_bytes = bytes;
	out->copy_reps = reps;
	out->copy_GBps_p50 = s.p50;
	out->copy_GBps_max = s.max;
	/* keep the copies observable so they are not optimised away */
	out->checksum = (unsigned char)a[bytes / 2] + (unsigned char)b[bytes / 3];
	free(gbps);
	free(a);
	free(b);
	return MOE_OK;
}
