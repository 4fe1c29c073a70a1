/* Host backend's ll ops and experts with device counts: "device memory" is host memory, and peers' receive
 * buffers are mapped from the launcher's shared segment (ranks are separate processes). A signal is a
 * release store after the rows and counts it covers; a waiter spins on an acquire load, then backs off
 * to sleeping so that oversubscribed cores still let the writer run. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "host_ll.h"

/* Give up on a peer's signal after this long: the launcher's case timeout normally kills the ranks first;
 * this bound keeps a rank whose launcher is gone from spinning forever. */
#define LL_WAIT_LIMIT_S 86400.0

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Wait until *sig reaches epoch (acquire: what was written before the signal is visible after). */
static int wait_signal(const uint64_t *sig, uint64_t epoch, int peer, const char *what)
{
	double t0 = 0;
	for (long i = 0;; i++) {
		if (__atomic_load_n(sig, __ATOMIC_ACQUIRE) >= epoch)
			return MOE_OK;
		if (i < 256)
			continue;
		if (i == 256)
			t0 = now_s();
		struct timespec ts = {0, i < 4096 ? 1000 : 50000}; /* 1 us, then 50 us */
		nanosleep(&ts, NULL);
		if ((i & 1023) == 0 && now_s() - t0 > LL_WAIT_LIMIT_S) {
			moe_err("ll: no %s signal from rank %d for epoch %llu after %.0f s", what, peer,
				(unsigned long long)epoch, LL_WAIT_LIMIT_S);
			return MOE_ERR_SYSTEM;
		}
	}
}

int moe_host_ffn_dev(struct moe_dev *dev, const struct moe_ffn_cfg *cfg, const moe_bf16 *d_x,
		     const int32_t *d_counts, int64_t max_rows, const float *d_scale, moe_bf16 *d_out)
{
	int64_t *counts = malloc((size_t)(cfg->nexperts > 0 ? cfg->nexperts : 1) * sizeof(int64_t)), sum = 0;
	if (!counts)
		return MOE_ERR_NOMEM;
	for (int64_t j = 0; j < cfg->nexperts; j++)
		sum += counts[j] = d_counts[j];
	int rc = MOE_ERR_SYSTEM;
	if (sum > max_rows)
		moe_err("ffn_dev: %lld rows counted, the buffers hold %lld", (long long)sum, (long long)max_rows);
	else
		rc = moe_host_ffn(dev, cfg, d_x, counts, d_scale, d_out);
	free(counts);
	return rc;
}

int moe_host_ll_dispatch(struct moe_dev *dev, const struct moe_ll_plan *pl, const moe_bf16 *d_x, int64_t n,
			 const int32_t *d_idx, const float *d_w, int32_t *d_slot)
{
	(void)dev;
	int64_t E = pl->experts, K = pl->topk, H = pl->hidden, epr = pl->epr, cap = pl->cap, me = pl->rank;
	int64_t *cnt = calloc((size_t)E, sizeof(int64_t)), *next = calloc((size_t)E, sizeof(int64_t));
	if (!cnt || !next) {
		free(cnt);
		free(next);
		return MOE_ERR_NOMEM;
	}
	for (int64_t i = 0; i < n * K; i++)
		if (d_idx[i] >= 0 && d_idx[i] < E)
			cnt[d_idx[i]]++;
	/* expert e's rows start in its owner's block after the owner's lower experts */
	for (int64_t e = 0; e < E; e++)
		next[e] = e % epr ? next[e - 1] + cnt[e - 1] : 0;
	int64_t sent = 0, remote = 0, dropped = 0;
	for (int64_t i = 0; i < n * K; i++) { /* (t, k) order: each expert's rows by token, then slot */
		int32_t e = d_idx[i];
		d_slot[i] = -1;
		if (e < 0 || e >= E)
			continue;
		int64_t d = e / epr, j = next[e]++;
		if (j >= cap) {
			dropped++;
			continue;
		}
		int64_t at = me * cap + j;
		memcpy(pl->recv_x[d] + at * H, d_x + (i / K) * H, (size_t)H * sizeof(moe_bf16));
		pl->recv_e[d][at] = (int32_t)(e % epr);
		if (pl->scaled)
			pl->recv_w[d][at] = d_w[i];
		d_slot[i] = (int32_t)(d * cap + j);
		sent++;
		remote += d != me;
	}
	/* counts of what landed (a tail past cap was dropped), then the signal, to every rank */
	uint64_t epoch = *pl->d_epoch + 1;
	for (int64_t d = 0; d < pl->nranks; d++) {
		for (int64_t le = 0; le < epr; le++) {
			int64_t e = d * epr + le, start = next[e] - cnt[e];
			pl->recv_cnt[d][me * epr + le] = (int32_t)MOE_MAX(0, MOE_MIN(cnt[e], cap - start));
		}
		__atomic_store_n(&pl->sig_disp[d][me], epoch, __ATOMIC_RELEASE);
	}
	pl->d_stats[MOE_LL_STAT_SENT] += sent;
	pl->d_stats[MOE_LL_STAT_SENT_REMOTE] += remote;
	pl->d_stats[MOE_LL_STAT_DROPPED] += dropped;
	free(cnt);
	free(next);
	return MOE_OK;
}

int moe_host_ll_receive(struct moe_dev *dev, const struct moe_ll_plan *pl, moe_bf16 *d_x, float *d_w,
			int32_t *d_counts, int32_t *d_src)
{
	(void)dev;
	int64_t R = pl->nranks, epr = pl->epr, cap = pl->cap, H = pl->hidden, me = pl->rank;
	uint64_t epoch = *pl->d_epoch + 1;
	for (int64_t s = 0; s < R; s++)
		MOE_CHECK(wait_signal(&pl->sig_disp[me][s], epoch, (int)s, "dispatch"));
	const int32_t *cnt = pl->recv_cnt[me];
	const moe_bf16 *rx = pl->recv_x[me];
	int64_t i = 0;
	for (int64_t le = 0; le < epr; le++) {
		int64_t c = 0;
		for (int64_t s = 0; s < R; s++) { /* packed by source, then j */
			int64_t off = 0;
			for (int64_t f = 0; f < le; f++)
				off += cnt[s * epr + f];
			for (int64_t j = off; j < off + cnt[s * epr + le]; j++, i++, c++) {
				int64_t at = s * cap + j;
				memcpy(d_x + i * H, rx + at * H, (size_t)H * sizeof(moe_bf16));
				if (pl->scaled)
					d_w[i] = pl->recv_w[me][at];
				d_src[i] = (int32_t)at;
			}
		}
		d_counts[le] = (int32_t)c;
		pl->d_stats[MOE_LL_STAT_EXPERT0 + le] += c;
	}
	return MOE_OK;
}

int moe_host_ll_return(struct moe_dev *dev, const struct moe_ll_plan *pl, const moe_bf16 *d_y,
		       const int32_t *d_src, const int32_t *d_counts)
{
	(void)dev;
	int64_t total = 0, H = pl->hidden, cap = pl->cap, me = pl->rank;
	for (int64_t le = 0; le < pl->epr; le++)
		total += d_counts[le];
	for (int64_t i = 0; i < total; i++) {
		int64_t s = d_src[i] / cap, j = d_src[i] % cap; /* my row j from source s: its block for me */
		memcpy(pl->ret_y[s] + (me * cap + j) * H, d_y + i * H, (size_t)H * sizeof(moe_bf16));
	}
	uint64_t epoch = *pl->d_epoch + 1;
	for (int64_t s = 0; s < pl->nranks; s++)
		__atomic_store_n(&pl->sig_ret[s][me], epoch, __ATOMIC_RELEASE);
	return MOE_OK;
}

int moe_host_ll_wait_return(struct moe_dev *dev, const struct moe_ll_plan *pl)
{
	(void)dev;
	uint64_t epoch = *pl->d_epoch + 1;
	for (int64_t d = 0; d < pl->nranks; d++)
		MOE_CHECK(wait_signal(&pl->sig_ret[pl->rank][d], epoch, (int)d, "return"));
	*pl->d_epoch = epoch;
	return MOE_OK;
}
