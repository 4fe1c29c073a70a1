/* CUDA backend, ll: the low-latency exchange the GPU starts itself. Dispatch buckets slots by expert on the
 * device and writes rows, counts and a signal straight into every peer's symmetric buffers; receive waits for
 * the signals and packs rows expert-major; return writes outputs back and signals; wait_return ends the layer.
 * Nothing here reads a count or an epoch on the host, so a layer made of these calls can be graph-captured. */
#include "cuda_internal.h"

#define LL_WARPS 8 /* warps per block in the row kernels; one warp moves one row */
#define LL_MAX_BLOCKS 1024
#define LL_SPIN_THREADS 128
#define LL_FLAGS 256 /* bytes at the head of the ll workspace: the kernels' done counters */
/* A signal that never comes is a bug or a dead peer: trap (the stream reports an error) instead of hanging. */
#define LL_TIMEOUT_NS (300ull * 1000000000ull)

enum { LL_DONE_DISPATCH, LL_DONE_RETURN };

/* ---- system-scope signalling ---- */

__device__ static inline uint64_t ld_acquire_sys(const uint64_t *p)
{
	uint64_t v;
	asm volatile("ld.acquire.sys.global.u64 %0, [%1];" : "=l"(v) : "l"(p) : "memory");
	return v;
}

__device__ static inline void st_release_sys(uint64_t *p, uint64_t v)
{
	asm volatile("st.release.sys.global.u64 [%0], %1;" ::"l"(p), "l"(v) : "memory");
}

__device__ static inline uint64_t now_ns(void)
{
	uint64_t t;
	asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
	return t;
}

/* One block: wait until sigs[me][s] >= *epoch + 1 for every source s, then (advance) *epoch += 1. The sleep
 * backs off to a microsecond so that ranks time-sliced on one GPU lose little of their slice to polling. */
__global__ void ll_wait_kernel(uint64_t *const *sigs, int me, int nranks, uint64_t *epoch, int advance, int what)
{
	const uint64_t *sig = sigs[me];
	uint64_t target = *epoch + 1;
	for (int s = threadIdx.x; s < nranks; s += blockDim.x) {
		unsigned ns = 32;
		uint64_t t0 = now_ns();
		while (ld_acquire_sys(sig + s) < target) {
			__nanosleep(ns);
			ns = ns < 1024 ? ns * 2 : ns;
			if (now_ns() - t0 > LL_TIMEOUT_NS) {
				printf("moebench: rank %d: ll %s: no signal from rank %d for layer epoch %llu in 300 s\n", me,
				       what ? "wait_return" : "receive", s, (unsigned long long)target);
				__trap();
			}
		}
	}
	__syncthreads(); /* every thread's acquire is behind this rank's next kernels (stream order) */
	if (advance && threadIdx.x == 0)
		*epoch = target;
}

/* ---- row moves: one warp a row, 16-byte vectors when both ends allow; .cg loads (L2), since peers wrote
 * the rows from outside this SM ---- */

__device__ static void warp_copy_row(moe_bf16 *dst, const moe_bf16 *src, int64_t h, int lane)
{
	if (h % 8 == 0 && (((uintptr_t)dst | (uintptr_t)src) & 15) == 0) {
		const uint4 *s = (const uint4 *)src;
		uint4 *o = (uint4 *)dst;
		int64_t nv = h / 8, c = lane;
		for (; c + 96 < nv; c += 128) { /* four vectors in flight per lane */
			uint4 v0 = __ldcg(s + c), v1 = __ldcg(s + c + 32), v2 = __ldcg(s + c + 64), v3 = __ldcg(s + c + 96);
			o[c] = v0;
			o[c + 32] = v1;
			o[c + 64] = v2;
			o[c + 96] = v3;
		}
		for (; c < nv; c += 32)
			o[c] = __ldcg(s + c);
	} else
		for (int64_t c = lane; c < h; c += 32)
			dst[c] = __ldcg((const unsigned short *)src + c);
}

/* The last q in [0, n) with tab[q] <= v (tab ascending, tab[0] <= v): the bucket that holds packed row v. */
__device__ static int64_t last_at_or_below(const int32_t *tab, int64_t n, int64_t v)
{
	int64_t lo = 0, hi = n - 1;
	while (lo < hi) {
		int64_t mid = (lo + hi + 1) / 2;
		if (tab[mid] <= v)
			lo = mid;
		else
			hi = mid - 1;
	}
	return lo;
}

/* A grid's end: every thread fences its writes to system scope; the block that finishes last (counted on
 * *done) returns 1 with the others' writes ordered before whatever it writes next, and re-arms *done. */
__device__ static int ll_last_block(unsigned *done)
{
	__shared__ int last;
	__threadfence_system();
	__syncthreads();
	if (threadIdx.x == 0) {
		last = atomicAdd(done, 1u) == gridDim.x - 1;
		__threadfence_system();
		if (last)
			*done = 0; /* the next launch on this stream starts from zero */
	}
	__syncthreads();
	if (last)
		__threadfence_system();
	return last;
}

/* ---- dispatch ---- */

struct ll_send_args {
	moe_bf16 *const *recv_x;
	int32_t *const *recv_e;
	float *const *recv_w;
	int32_t *const *recv_cnt;
	uint64_t *const *sig;
	const uint64_t *epoch;
	int64_t *stats;
	unsigned *done;
	const moe_bf16 *x;
	const int32_t *idx;
	const float *w;
	int32_t *slot;
	const int32_t *pos;   /* slot's place in (expert, slot) order, -1 for pads */
	const int64_t *total; /* slots per expert */
	const int64_t *start; /* first place of each expert */
	int64_t m, k, h, epr, experts, cap;
	int me, nranks, scaled;
};

/* Counts into every owner (zeros too), then the signal *epoch + 1 into every rank, after all rows. */
__device__ static void ll_counts_and_signal(const struct ll_send_args &a)
{
	for (int64_t q = threadIdx.x; q < a.experts; q += blockDim.x) {
		int64_t o = q / a.epr, le = q % a.epr;
		int64_t room = a.cap - (a.start[q] - a.start[o * a.epr]); /* rows of o's block left for expert q */
		int64_t c = a.total[q] < room ? a.total[q] : room;
		a.recv_cnt[o][(int64_t)a.me * a.epr + le] = (int32_t)(c > 0 ? c : 0);
	}
	__threadfence_system();
	__syncthreads();
	uint64_t v = *a.epoch + 1;
	for (int s = threadIdx.x; s < a.nranks; s += blockDim.x)
		st_release_sys(a.sig[s] + a.me, v);
}

/* Slot i = (t, k) lands in its owner's block for this rank at j = its place among the owner's slots, which
 * the stable bucketing made (local expert, t, k) order; j >= cap is dropped. */
__global__ void ll_send_kernel(struct ll_send_args a)
{
	__shared__ unsigned long long n_sent, n_remote, n_dropped;
	if (threadIdx.x == 0)
		n_sent = n_remote = n_dropped = 0;
	__syncthreads();
	int lane = threadIdx.x & 31;
	int64_t nw = (int64_t)gridDim.x * LL_WARPS;
	for (int64_t i = (int64_t)blockIdx.x * LL_WARPS + threadIdx.x / 32; i < a.m; i += nw) {
		int32_t p = a.pos[i], out = -1;
		if (p >= 0) {
			int32_t e = a.idx[i];
			int o = (int)(e / a.epr);
			int64_t j = p - a.start[(int64_t)o * a.epr];
			if (j < a.cap) {
				int64_t r = (int64_t)a.me * a.cap + j;
				warp_copy_row(a.recv_x[o] + r * a.h, a.x + (i / a.k) * a.h, a.h, lane);
				if (lane == 0) {
					a.recv_e[o][r] = (int32_t)(e % a.epr);
					if (a.scaled)
						a.recv_w[o][r] = a.w[i];
					atomicAdd(&n_sent, 1ull);
					if (o != a.me)
						atomicAdd(&n_remote, 1ull);
				}
				out = (int32_t)(o * a.cap + j);
			} else if (lane == 0)
				atomicAdd(&n_dropped, 1ull);
		}
		if (lane == 0)
			a.slot[i] = out;
	}
	__syncthreads();
	if (threadIdx.x == 0) { /* integer sums: the same whatever order the blocks add in */
		atomicAdd((unsigned long long *)&a.stats[MOE_LL_STAT_SENT], n_sent);
		atomicAdd((unsigned long long *)&a.stats[MOE_LL_STAT_SENT_REMOTE], n_remote);
		atomicAdd((unsigned long long *)&a.stats[MOE_LL_STAT_DROPPED], n_dropped);
	}
	if (ll_last_block(a.done))
		ll_counts_and_signal(a);
}

/* ---- receive ---- */

struct ll_recv_args {
	moe_bf16 *const *recv_x;
	float *const *recv_w;
	int32_t *const *recv_cnt;
	moe_bf16 *x;
	float *w;
	int32_t *counts, *src;
	int64_t *stats;
	int32_t *j0;   /* [s * (epr + 1) + le]: first row of (s, le) in s's block; [.. + epr]: rows from s */
	int32_t *off;  /* [le * (nranks + 1) + s]: first packed row of (le, s) */
	int32_t *eoff; /* [le]: first packed row of le; [epr]: rows in all */
	int64_t h, epr, cap;
	int me, nranks, scaled;
};

/* One block: the offsets of the expert-major layout, from this rank's own recv_cnt. The R x E counts are read
 * once into shared memory (dynamic: R * E + E + 1 int32): the serial runs below then cost shared-memory
 * latency, not a global load each (256 of those in a row took ~80 us for DeepSeek-V3 on one rank). */
__global__ void ll_recv_prefix_kernel(struct ll_recv_args a)
{
	extern __shared__ int32_t sh[];
	const int32_t *cnt = a.recv_cnt[a.me];
	int64_t E = a.epr, R = a.nranks;
	int32_t *c = sh, *tot = sh + R * E;
	for (int64_t q = threadIdx.x; q < R * E; q += blockDim.x)
		c[q] = __ldcg(cnt + q);
	__syncthreads();
	for (int64_t s = threadIdx.x; s < R; s += blockDim.x) {
		int32_t run = 0;
		for (int64_t le = 0; le < E; le++) {
			a.j0[s * (E + 1) + le] = run;
			run += c[s * E + le];
		}
		a.j0[s * (E + 1) + E] = run;
		if (run > a.cap) { /* the sender broke its own capacity: stop before reading past its block */
			printf("moebench: rank %d: ll receive: rank %lld sent %d rows, capacity %lld\n", a.me, (long long)s,
			       run, (long long)a.cap);
			__trap();
		}
	}
	for (int64_t le = threadIdx.x; le < E; le += blockDim.x) {
		int32_t run = 0;
		for (int64_t s = 0; s < R; s++) {
			a.off[le * (R + 1) + s] = run;
			run += c[s * E + le];
		}
		a.off[le * (R + 1) + R] = run;
		a.counts[le] = run;
		tot[le] = run;
		a.stats[MOE_LL_STAT_EXPERT0 + le] += run;
	}
	__syncthreads();
	if (threadIdx.x == 0) {
		int32_t run = 0;
		for (int64_t le = 0; le < E; le++) {
			int32_t t = tot[le];
			tot[le] = run;
			a.eoff[le] = run;
			run += t;
		}
		a.eoff[E] = run;
	}
	__syncthreads();
	for (int64_t q = threadIdx.x; q < E * (R + 1); q += blockDim.x)
		a.off[q] += tot[q / (R + 1)];
}

/* Packed row i: its expert le, then its source s, then its row j in s's block. */
__global__ void ll_pack_kernel(struct ll_recv_args a)
{
	int64_t E = a.epr, R = a.nranks, total = a.eoff[E];
	const moe_bf16 *rx = a.recv_x[a.me];
	int lane = threadIdx.x & 31;
	int64_t nw = (int64_t)gridDim.x * LL_WARPS;
	for (int64_t i = (int64_t)blockIdx.x * LL_WARPS + threadIdx.x / 32; i < total; i += nw) {
		int64_t le = last_at_or_below(a.eoff, E, i);
		int64_t s = last_at_or_below(a.off + le * (R + 1), R, i);
		int64_t j = a.j0[s * (E + 1) + le] + (i - a.off[le * (R + 1) + s]);
		int64_t r = s * a.cap + j;
		warp_copy_row(a.x + i * a.h, rx + r * a.h, a.h, lane);
		if (lane == 0) {
			a.src[i] = (int32_t)r;
			if (a.scaled)
				a.w[i] = __ldcg(a.recv_w[a.me] + r);
		}
	}
}

/* ---- return ---- */

struct ll_ret_args {
	moe_bf16 *const *ret_y;
	uint64_t *const *sig;
	const uint64_t *epoch;
	unsigned *done;
	const moe_bf16 *y;
	const int32_t *src, *counts;
	int64_t h, epr, cap;
	int me, nranks;
};

__global__ void ll_return_kernel(struct ll_ret_args a)
{
	__shared__ unsigned long long total;
	if (threadIdx.x == 0)
		total = 0;
	__syncthreads();
	unsigned long long part = 0;
	for (int64_t q = threadIdx.x; q < a.epr; q += blockDim.x)
		part += (unsigned long long)a.counts[q];
	atomicAdd(&total, part);
	__syncthreads();
	int64_t rows = (int64_t)total, lim = (int64_t)a.nranks * a.cap;
	rows = rows < lim ? rows : lim;
	int lane = threadIdx.x & 31;
	int64_t nw = (int64_t)gridDim.x * LL_WARPS;
	for (int64_t i = (int64_t)blockIdx.x * LL_WARPS + threadIdx.x / 32; i < rows; i += nw) {
		int64_t v = a.src[i], s = v / a.cap, j = v % a.cap;
		warp_copy_row(a.ret_y[s] + ((int64_t)a.me * a.cap + j) * a.h, a.y + i * a.h, a.h, lane);
	}
	if (ll_last_block(a.done)) {
		uint64_t e = *a.epoch + 1;
		for (int s = threadIdx.x; s < a.nranks; s += blockDim.x)
			st_release_sys(a.sig[s] + a.me, e);
	}
}

/* ---- host side ---- */

static int ll_check(const struct moe_ll_plan *p)
{
	if (p->nranks < 1 || p->rank < 0 || p->rank >= p->nranks || p->epr < 1 || p->experts != p->epr * p->nranks ||
	    p->topk < 1 || p->hidden < 1 || p->cap < 0 || p->cap * p->nranks > INT32_MAX) {
		moe_err("cuda ll: bad plan: rank %d of %d, %lld experts, %lld a rank, topk %lld, hidden %lld, cap %lld",
			p->rank, p->nranks, (long long)p->experts, (long long)p->epr, (long long)p->topk,
			(long long)p->hidden, (long long)p->cap);
		return MOE_ERR_USAGE;
	}
	if (!p->recv_x || !p->recv_e || !p->recv_cnt || !p->sig_disp || !p->ret_y || !p->sig_ret || !p->d_epoch ||
	    !p->d_stats || (p->scaled && !p->recv_w)) {
		moe_err("cuda ll: plan of rank %d lacks a buffer", p->rank);
		return MOE_ERR_USAGE;
	}
	return MOE_OK;
}

/* The ll workspace: done counters at its head, then body bytes. It grows only outside a capture (run a
 * layer eagerly before capturing): a graph keeps the addresses it was recorded with. */
static int ll_workspace(struct moe_dev *d, size_t body, char **out)
{
	size_t need = LL_FLAGS + ((body + 255) & ~(size_t)255);
	if (d->ll_scratch_bytes < need) {
		cudaStreamCaptureStatus cs;
		CU(cudaStreamIsCapturing(d->stream, &cs));
		if (cs != cudaStreamCaptureStatusNone) {
			moe_err("cuda ll: the workspace must grow to %zu bytes during a graph capture; run the layer once "
				"before capturing it", need);
			return MOE_ERR_UNSUPPORTED;
		}
		size_t grow = need + need / 2; /* room for a layer with a few more tokens */
		MOE_CHECK(cuda_grow(&d->ll_scratch, &d->ll_scratch_bytes, grow));
		CU(cudaMemsetAsync(d->ll_scratch, 0, LL_FLAGS, d->stream));
	}
	*out = (char *)d->ll_scratch + LL_FLAGS;
	return MOE_OK;
}

static unsigned ll_row_grid(int64_t rows)
{
	int64_t b = (rows + LL_WARPS - 1) / LL_WARPS;
	return (unsigned)(b < 1 ? 1 : b > LL_MAX_BLOCKS ? LL_MAX_BLOCKS : b);
}

static size_t al16(size_t n)
{
	return (n + 15) & ~(size_t)15;
}

int cuda_ll_dispatch(struct moe_dev *d, const struct moe_ll_plan *pl, const moe_bf16 *x, int64_t n,
		     const int32_t *idx, const float *w, int32_t *slot)
{
	MOE_CHECK(ll_check(pl));
	int64_t m = n * pl->topk, nb = pl->experts;
	size_t sb = al16(cuda_bucket_scratch(m, nb)), pb = al16((size_t)m * 4);
	char *ws;
	MOE_CHECK(ll_workspace(d, sb + pb + 2 * (size_t)nb * 8, &ws));
	int32_t *pos = (int32_t *)(ws + sb);
	int64_t *total = (int64_t *)(ws + sb + pb), *start = total + nb;
	MOE_CHECK(cuda_bucket_dev(d, idx, m, 0, 1, nb, ws, pos, total, start));
	struct ll_send_args a = {pl->recv_x, pl->recv_e, pl->recv_w, pl->recv_cnt, pl->sig_disp, pl->d_epoch,
				 pl->d_stats, (unsigned *)d->ll_scratch + LL_DONE_DISPATCH, x, idx, w, slot, pos, total,
				 start, m, pl->topk, pl->hidden, pl->epr, pl->experts, pl->cap, pl->rank, pl->nranks,
				 pl->scaled};
	ll_send_kernel<<<ll_row_grid(m), LL_WARPS * 32, 0, d->stream>>>(a);
	LAUNCHED();
	return MOE_OK;
}

int cuda_ll_receive(struct moe_dev *d, const struct moe_ll_plan *pl, moe_bf16 *x, float *w, int32_t *counts,
		    int32_t *src)
{
	MOE_CHECK(ll_check(pl));
	int64_t E = pl->epr, R = pl->nranks;
	size_t jb = al16((size_t)(R * (E + 1)) * 4), ob = al16((size_t)(E * (R + 1)) * 4);
	char *ws;
	MOE_CHECK(ll_workspace(d, jb + ob + (size_t)(E + 1) * 4, &ws));
	struct ll_recv_args a = {pl->recv_x, pl->recv_w, pl->recv_cnt, x, w, counts, src, pl->d_stats,
				 (int32_t *)ws, (int32_t *)(ws + jb), (int32_t *)(ws + jb + ob), pl->hidden, E, pl->cap,
				 pl->rank, pl->nranks, pl->scaled};
	ll_wait_kernel<<<1, LL_SPIN_THREADS, 0, d->stream>>>(pl->sig_disp, pl->rank, pl->nranks, pl->d_epoch, 0, 0);
	LAUNCHED();
	size_t shm = (size_t)(R * pl->epr + pl->epr + 1) * sizeof(int32_t);
	if (shm > 48 * 1024) {
		moe_err("cuda ll: %lld experts, more than the receive prefix's shared memory holds", (long long)pl->experts);
		return MOE_ERR_UNSUPPORTED;
	}
	ll_recv_prefix_kernel<<<1, 256, shm, d->stream>>>(a);
	LAUNCHED();
	ll_pack_kernel<<<ll_row_grid(R * pl->cap), LL_WARPS * 32, 0, d->stream>>>(a);
	LAUNCHED();
	return MOE_OK;
}

int cuda_ll_return(struct moe_dev *d, const struct moe_ll_plan *pl, const moe_bf16 *y, const int32_t *src,
		   const int32_t *counts)
{
	MOE_CHECK(ll_check(pl));
	char *ws;
	MOE_CHECK(ll_workspace(d, 0, &ws));
	struct ll_ret_args a = {pl->ret_y, pl->sig_ret, pl->d_epoch, (unsigned *)d->ll_scratch + LL_DONE_RETURN, y, src,
				counts, pl->hidden, pl->epr, pl->cap, pl->rank, pl->nranks};
	ll_return_kernel<<<ll_row_grid(pl->nranks * pl->cap), LL_WARPS * 32, 0, d->stream>>>(a);
	LAUNCHED();
	return MOE_OK;
}

int cuda_ll_wait_return(struct moe_dev *d, const struct moe_ll_plan *pl)
{
	MOE_CHECK(ll_check(pl));
	ll_wait_kernel<<<1, LL_SPIN_THREADS, 0, d->stream>>>(pl->sig_ret, pl->rank, pl->nranks, pl->d_epoch, 1, 1);
	LAUNCHED();
	return MOE_OK;
}
