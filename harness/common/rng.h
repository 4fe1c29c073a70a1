/* Counter-based RNG: any element of any tensor from (seed, tensor, layer, row, column), no state. */
#ifndef MOE_RNG_H
#define MOE_RNG_H

#include <stdint.h>

/* Tensor ids: part of every element's key, so tensors never share streams. */
enum moe_tensor {
	MOE_T_X = 1,      /* layer-0 input tokens, row = global token id */
	MOE_T_GATE = 2,   /* router weight Wg, row = expert, col = h */
	MOE_T_W1 = 3,     /* row = expert*F + f, col = h */
	MOE_T_W3 = 4,
	MOE_T_W2 = 5,     /* row = expert*H + h, col = f */
	MOE_T_BIAS = 6,   /* row = expert */
	MOE_T_ROUTE = 7,  /* synthetic routing, row = global token id, col = draw */
	MOE_T_TOKENS = 8, /* token counts per DP group */
	MOE_T_SW1 = 9,    /* shared experts, row = s*F + f */
	MOE_T_SW3 = 10,
	MOE_T_SW2 = 11,
	MOE_T_SAMPLE = 12, /* choice of checked rows for check = sample:N */
};

/* The same code runs on the host and, compiled by nvcc, on the GPU: every element is identical on both. */
#ifdef __CUDACC__
#define MOE_HD __host__ __device__
#else
#define MOE_HD
#endif

MOE_HD static inline uint64_t moe_mix64(uint64_t z)
{
	z ^= z >> 30;
	z *= 0xbf58476d1ce4e5b9ull;
	z ^= z >> 27;
	z *= 0x94d049bb133111ebull;
	z ^= z >> 31;
	return z;
}

MOE_HD static inline uint64_t moe_rng_u64(uint64_t seed, uint32_t tensor, uint32_t layer, uint64_t row, uint64_t col)
{
	uint64_t h = moe_mix64(seed + 0x9e3779b97f4a7c15ull);
	h = moe_mix64(h ^ ((uint64_t)tensor << 32 | layer));
	h = moe_mix64(h ^ row);
	return moe_mix64(h ^ (col * 0x9e3779b97f4a7c15ull));
}

/* Uniform in [0, 1) with 53 random bits. */
MOE_HD static inline double moe_rng_unit(uint64_t seed, uint32_t tensor, uint32_t layer, uint64_t row, uint64_t col)
{
	return (double)(moe_rng_u64(seed, tensor, layer, row, col) >> 11) * 0x1.0p-53;
}

#endif
