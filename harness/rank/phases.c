/* The rank's phases: timing each phase (host clock or device marks), PAPI counters per phase, and the
 * planted faults and delays of the test aids (--inject-fault, --inject-delay). */
#include "rank_internal.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "status.h"

struct rank_run *moe_rank_current;

static void inject_fault(enum inject_kind k)
{
	switch (k) {
	case INJ_CRASH: raise(SIGSEGV); break;
	case INJ_HANG:
		for (;;)
			pause();
	case INJ_EXIT: _exit(9);
	case INJ_OOM: {
		/* run out of memory for real, but only of the little this process is allowed: a cap just above
		 * what it has keeps the planted fault from pushing the machine itself into the OOM killer */
		long pages = 0, page = sysconf(_SC_PAGESIZE);
		FILE *f = fopen("/proc/self/statm", "r");
		if (f) {
			if (fscanf(f, "%ld", &pages) != 1)
				pages = 0;
			fclose(f);
		}
		struct rlimit rl = {(rlim_t)pages * (rlim_t)page + (64u << 20), (rlim_t)pages * (rlim_t)page + (64u << 20)};
		setrlimit(RLIMIT_AS, &rl);
		for (;;) {
			char *p = malloc(4u << 20);
			if (!p) {
				moe_err("out of memory (planted by --inject-fault)");
				abort();
			}
			memset(p, 1, 4u << 20);
		}
	}
	default: break;
	}
}

/* Test aid (--inject-delay): a planted slowdown, spent inside the phase that starts now. */
static void planted_delay(int ph)
{
	if (moe_rank_current && ph >= 0 && moe_rank_current->delay_phase == ph)
		for (double until = moe_now_us() + moe_rank_current->delay_us; moe_now_us() < until;)
			;
}

int moe_phase(struct moe_ctx *ctx, int ph)
{
	if (moe_rank_current && moe_rank_current->capturing) {
		/* inside a graph capture a sync would break it and a mark would be replayed: the phase is only
		 * published (phase times are not available in graph mode) */
		ctx->cur_phase = ph;
		if (ph >= 0 && ctx->status)
			atomic_store(&ctx->status->phase[ctx->rank], ph);
		return MOE_OK;
	}
	if (ctx->be && ctx->be->mark && ctx->nmarks >= 0) {
		/* device timestamps: no sync on the hot path; durations are read at the end of the iteration */
		if (ctx->nmarks < MOE_MAX_MARKS) {
			MOE_CHECK(ctx->be->mark(ctx->dev, ctx->nmarks));
			ctx->mark_phase[ctx->nmarks++] = ph;
		}
		ctx->cur_phase = ph;
		if (ph >= 0 && ctx->status)
			atomic_store(&ctx->status->phase[ctx->rank], ph);
		if (ph >= 0 && moe_rank_current && moe_rank_current->inject != INJ_NONE && moe_rank_current->inject_phase == ph)
			inject_fault(moe_rank_current->inject);
		if (ph >= 0 && moe_rank_current && moe_rank_current->delay_phase == ph) {
			if (ctx->be->spin) /* on the device's timeline, right after the phase's start mark */
				MOE_CHECK(ctx->be->spin(ctx->dev, moe_rank_current->delay_us));
			else { /* the device reaches the start mark, then idles for the delay */
				MOE_CHECK(ctx->be->sync(ctx->dev));
				planted_delay(ph);
			}
		}
		return MOE_OK;
	}
	if (ctx->be)
		MOE_CHECK(ctx->be->sync(ctx->dev));
	double now = moe_now_us();
	if (ctx->cur_phase >= 0) {
		ctx->phase_us[ctx->cur_phase] += now - ctx->phase_t0;
		if (moe_rank_current) {
			long long v[MOE_MAX_EVENTS];
			moe_counters_delta(&moe_rank_current->ctr, v);
			for (int i = 0; i < MOE_MAX_EVENTS; i++)
				moe_rank_current->ctr_phase[ctx->cur_phase][i] += v[i];
		}
	} else if (moe_rank_current)
		moe_counters_delta(&moe_rank_current->ctr, (long long[MOE_MAX_EVENTS]){0});
	ctx->cur_phase = ph;
	ctx->phase_t0 = now;
	if (ph < 0)
		return MOE_OK;
	if (ctx->status)
		atomic_store(&ctx->status->phase[ctx->rank], ph);
	if (moe_rank_current && moe_rank_current->inject != INJ_NONE && moe_rank_current->inject_phase == ph)
		inject_fault(moe_rank_current->inject);
	planted_delay(ph);
	return MOE_OK;
}

int moe_xfer_begin(struct moe_ctx *ctx, double *t0)
{
	MOE_CHECK(ctx->be->sync(ctx->dev));
	*t0 = moe_now_us();
	return MOE_OK;
}

int moe_xfer_end(struct moe_ctx *ctx, double t0)
{
	MOE_CHECK(ctx->be->sync(ctx->dev));
	ctx->xfer_us += moe_now_us() - t0;
	return MOE_OK;
}

void moe_rank_phase_end(struct moe_ctx *ctx)
{
	moe_phase(ctx, -1);
	ctx->cur_phase = -1;
}