/* CUDA backend, layout: the stable counting sort that buckets slots by expert or rank, and the row moves
 * (scatter, gather) that permute tokens into and out of that order. */
#include "cuda_internal.h"

/* ---- stable bucketing ---- */

#define BK_CHUNK 256

__device__ static int bucket_of(int32_t key, int32_t off, int32_t div, int64_t nb)
{
	if (key < off)
		return -1;
	int b = (key - off) / div;
	return b < nb ? b : -1;
}

/* Per chunk: each item's rank among same-bucket items before it in the chunk, and per-bucket counts. */
__global__ void bucket_count(const int32_t *key, int64_t m, int32_t off, int32_t div, int64_t nb, int32_t *cnt,
			     int32_t *rank_in)
{
	__shared__ int32_t b[BK_CHUNK];
	int64_t base = (int64_t)blockIdx.x * BK_CHUNK;
	int i = threadIdx.x;
	b[i] = base + i < m ? bucket_of(key[base + i], off, div, nb) : -1;
	__syncthreads();
	if (base + i < m) {
		int r = 0;
		for (int j = 0; j < i; j++)
			r += b[j] == b[i];
		rank_in[base + i] = r;
	}
	for (int64_t q = i; q < nb; q += blockDim.x) {
		int c = 0;
		for (int j = 0; j < BK_CHUNK; j++)
			c += b[j] == q;
		cnt[q * gridDim.x + blockIdx.x] = c;
	}
}

/* Exclusive scan of cnt in bucket-major order (one block): per-bucket running sums in parallel, then the
 * bucket bases; totals per bucket, and the bases themselves when start is not NULL. */
__global__ void bucket_scan(int32_t *cnt, int64_t nb, int nchunks, int64_t *total, int64_t *start)
{
	extern __shared__ int64_t bbase[];
	for (int64_t q = threadIdx.x; q < nb; q += blockDim.x) {
		int64_t s = 0;
		for (int c = 0; c < nchunks; c++) {
			int32_t v = cnt[q * nchunks + c];
			cnt[q * nchunks + c] = (int32_t)s;
			s += v;
		}
		total[q] = s;
		bbase[q] = s;
	}
	__syncthreads();
	if (threadIdx.x == 0) {
		int64_t run = 0;
		for (int64_t q = 0; q < nb; q++) {
			int64_t v = bbase[q];
			bbase[q] = run;
			run += v;
		}
	}
	__syncthreads();
	for (int64_t q = threadIdx.x; q < nb; q += blockDim.x) {
		for (int c = 0; c < nchunks; c++)
			cnt[q * nchunks + c] += (int32_t)bbase[q];
		if (start)
			start[q] = bbase[q];
	}
}

__global__ void bucket_place(const int32_t *key, int64_t m, int32_t off, int32_t div, int64_t nb, const int32_t *cnt,
			     const int32_t *rank_in, int32_t *pos)
{
	int64_t i = (int64_t)blockIdx.x * BK_CHUNK + threadIdx.x;
	if (i >= m)
		return;
	int b = bucket_of(key[i], off, div, nb);
	pos[i] = b < 0 ? -1 : cnt[(int64_t)b * gridDim.x + blockIdx.x] + rank_in[i];
}

size_t cuda_bucket_scratch(int64_t m, int64_t nb)
{
	int64_t chunks = (m + BK_CHUNK - 1) / BK_CHUNK;
	return (size_t)nb * chunks * 4 + (size_t)m * 4 + 64;
}

int cuda_bucket_dev(struct moe_dev *d, const int32_t *key, int64_t m, int32_t off, int32_t div, int64_t nb,
		    void *scratch, int32_t *pos, int64_t *total, int64_t *start)
{
	int chunks = (int)((m + BK_CHUNK - 1) / BK_CHUNK);
	if (chunks == 0) { /* nothing to place: the sizes and bases are zeros, still in stream order */
		CU(cudaMemsetAsync(total, 0, (size_t)nb * sizeof(int64_t), d->stream));
		if (start)
			CU(cudaMemsetAsync(start, 0, (size_t)nb * sizeof(int64_t), d->stream));
		return MOE_OK;
	}
	int32_t *cnt = (int32_t *)scratch, *rank_in = cnt + (size_t)nb * chunks;
	bucket_count<<<chunks, BK_CHUNK, 0, d->stream>>>(key, m, off, div, nb, cnt, rank_in);
	LAUNCHED();
	bucket_scan<<<1, 1024, (size_t)nb * sizeof(int64_t), d->stream>>>(cnt, nb, chunks, total, start);
	LAUNCHED();
	bucket_place<<<chunks, BK_CHUNK, 0, d->stream>>>(key, m, off, div, nb, cnt, rank_in, pos);
	LAUNCHED();
	return MOE_OK;
}

int cuda_bucket(struct moe_dev *d, const int32_t *key, int64_t m, int32_t off, int32_t div, int64_t nb,
		int64_t *counts, int32_t *pos)
{
	MOE_CHECK(cuda_refuse_in_capture(d, "bucket (its counts go to the host)"));
	if (m == 0) {
		memset(counts, 0, (size_t)nb * sizeof(int64_t));
		return MOE_OK;
	}
	size_t sb = (cuda_bucket_scratch(m, nb) + 15) & ~(size_t)15;
	MOE_CHECK(cuda_grow(&d->scratch, &d->scratch_bytes, sb + (size_t)nb * 8));
	int64_t *total = (int64_t *)((char *)d->scratch + sb);
	MOE_CHECK(cuda_bucket_dev(d, key, m, off, div, nb, d->scratch, pos, total, NULL));
	if (d->hcounts_cap < nb) {
		cudaFreeHost(d->hcounts);
		CU(cudaMallocHost((void **)&d->hcounts, (size_t)nb * sizeof(int64_t)));
		d->hcounts_cap = nb;
	}
	CU(cudaMemcpyAsync(d->hcounts, total, (size_t)nb * sizeof(int64_t), cudaMemcpyDeviceToHost, d->stream));
	CU(cudaStreamSynchronize(d->stream)); /* the host needs the split sizes */
	memcpy(counts, d->hcounts, (size_t)nb * sizeof(int64_t));
	return MOE_OK;
}

/* ---- row moves: 16-byte vectors when rows allow, one block of threads per row ---- */

template <typename V>
__global__ void scatter_kernel(const V *src, const int32_t *pos, int64_t m, int64_t src_div, int64_t vrow, V *dst)
{
	for (int64_t i = blockIdx.x; i < m; i += gridDim.x) {
		int32_t p = pos[i];
		if (p < 0)
			continue;
		const V *s = src + (i / src_div) * vrow;
		V *o = dst + (int64_t)p * vrow;
		for (int64_t c = threadIdx.x; c < vrow; c += blockDim.x)
			o[c] = s[c];
	}
}

template <typename V>
__global__ void gather_kernel(const V *src, const int32_t *idx, int64_t m, int64_t vrow, V *dst)
{
	for (int64_t i = blockIdx.x; i < m; i += gridDim.x) {
		int32_t p = idx[i];
		V *o = dst + i * vrow;
		if (p < 0) {
			for (int64_t c = threadIdx.x; c < vrow; c += blockDim.x)
				o[c] = V{};
			continue;
		}
		const V *s = src + (int64_t)p * vrow;
		for (int64_t c = threadIdx.x; c < vrow; c += blockDim.x)
			o[c] = s[c];
	}
}

static unsigned grid_for(int64_t m)
{
	return (unsigned)(m < 65535 * 4 ? (m > 0 ? m : 1) : 65535 * 4);
}

int cuda_scatter_rows(struct moe_dev *d, const moe_bf16 *src, const int32_t *pos, int64_t m, int64_t src_div,
		      int64_t h, moe_bf16 *dst)
{
	if (m == 0)
		return MOE_OK;
	if ((h * 2) % 16 == 0 && ((uintptr_t)src | (uintptr_t)dst) % 16 == 0) {
		int64_t v = h * 2 / 16;
		scatter_kernel<uint4><<<grid_for(m), v < 256 ? (unsigned)((v + 31) / 32 * 32) : 256, 0, d->stream>>>(
			(const uint4 *)src, pos, m, src_div, v, (uint4 *)dst);
	} else
		scatter_kernel<uint16_t><<<grid_for(m), 128, 0, d->stream>>>((const uint16_t *)src, pos, m, src_div, h,
									     (uint16_t *)dst);
	LAUNCHED();
	return MOE_OK;
}

int cuda_gather_rows(struct moe_dev *d, const moe_bf16 *src, const int32_t *idx, int64_t m, int64_t h,
		     moe_bf16 *dst)
{
	if (m == 0)
		return MOE_OK;
	if ((h * 2) % 16 == 0 && ((uintptr_t)src | (uintptr_t)dst) % 16 == 0) {
		int64_t v = h * 2 / 16;
		gather_kernel<uint4><<<grid_for(m), v < 256 ? (unsigned)((v + 31) / 32 * 32) : 256, 0, d->stream>>>(
			(const uint4 *)src, idx, m, v, (uint4 *)dst);
	} else
		gather_kernel<uint16_t><<<grid_for(m), 128, 0, d->stream>>>((const uint16_t *)src, idx, m, h,
									    (uint16_t *)dst);
	LAUNCHED();
	return MOE_OK;
}

__global__ void scatter_i32_kernel(const int32_t *src, const int32_t *pos, int64_t m, int32_t *dst)
{
	int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
	if (i < m && pos[i] >= 0)
		dst[pos[i]] = src[i];
}

int cuda_scatter_i32(struct moe_dev *d, const int32_t *src, const int32_t *pos, int64_t m, int32_t *dst)
{
	if (m == 0)
		return MOE_OK;
	scatter_i32_kernel<<<(unsigned)((m + 255) / 256), 256, 0, d->stream>>>(src, pos, m, dst);
	LAUNCHED();
	return MOE_OK;
}
