/* CUDA backend, Hopper grouped GEMM: CUTLASS's TMA + WGMMA ptr-array kernel with problem sizes read on the device,
 * behind one C launcher (built only when the CUTLASS headers are found: MOE_WITH_CUTLASS). */
#include <cute/tensor.hpp>
#include <cutlass/cutlass.h>
#include <cutlass/epilogue/collective/collective_builder.hpp>
#include <cutlass/gemm/collective/collective_builder.hpp>
#include <cutlass/gemm/device/gemm_universal_adapter.h>
#include <cutlass/gemm/dispatch_policy.hpp>
#include <cutlass/gemm/group_array_problem_shape.hpp>
#include <cutlass/gemm/kernel/gemm_universal.hpp>

#include "cuda_internal.h"

/* named, not anonymous: nvcc's stub cannot tell an anonymous namespace here from cute's */
namespace moe_gg {

using namespace cute;

/* One instantiation: bf16 operands, fp32 accumulation, bf16 D, CM x CN clusters (2x1 unless said: a cluster
 * shares B tiles across its M tiles through multicast, but the scheduler rounds each group's M tiles up to a
 * multiple of CM, a whole wasted tile for an odd count of row tiles). Pingpong overlaps one warp group's
 * epilogue with the other's MMAs (short K loops per tile: small M or N); cooperative splits a large tile over
 * both.
 *
 * Swap = false: GEMM M is the expert's rows, A the rows (rows x K, row-major), B = W (N x K row-major, i.e.
 * column-major K x N), D row-major. Swap = true computes D^T = W . A^T instead: GEMM M is the weight's N
 * (always a multiple of the tile), GEMM N the rows, so that a tile of a few rows reads each weight tile once
 * (few rows an expert make the weights, not the MMAs, the cost); D^T is column-major, i.e. D row-major. */
template <bool Swap, bool Pong, class TM, class TN, class TK, class CM = _2, class CN = _1> struct gg_config {
	static constexpr bool swap = Swap;
	using T = cutlass::bfloat16_t;
	using LA = cutlass::layout::RowMajor;
	using LB = cutlass::layout::ColumnMajor;
	using LD = cute::conditional_t<Swap, cutlass::layout::ColumnMajor, cutlass::layout::RowMajor>;
	static constexpr int align = 16 / sizeof(T);
	using Tile = Shape<TM, TN, TK>;
	using Cluster = Shape<CM, CN, _1>;
	using KSched = cute::conditional_t<Pong, cutlass::gemm::KernelPtrArrayTmaWarpSpecializedPingpong,
					   cutlass::gemm::KernelPtrArrayTmaWarpSpecializedCooperative>;
	using ESched = cute::conditional_t<Pong, cutlass::epilogue::PtrArrayTmaWarpSpecializedPingpong,
					   cutlass::epilogue::PtrArrayTmaWarpSpecializedCooperative>;
	using Problem = cutlass::gemm::GroupProblemShape<Shape<int, int, int>>;
	using Epilogue = typename cutlass::epilogue::collective::CollectiveBuilder<
		cutlass::arch::Sm90, cutlass::arch::OpClassTensorOp, Tile, Cluster,
		cutlass::epilogue::collective::EpilogueTileAuto, float, float, T, LD *, align, T, LD *, align, ESched,
		cutlass::epilogue::fusion::LinearCombination<T, float>>::CollectiveOp;
	using Mainloop = typename cutlass::gemm::collective::CollectiveBuilder<
		cutlass::arch::Sm90, cutlass::arch::OpClassTensorOp, T, LA *, align, T, LB *, align, float, Tile, Cluster,
		cutlass::gemm::collective::StageCountAutoCarveout<static_cast<int>(
			sizeof(typename Epilogue::SharedStorage))>,
		KSched>::CollectiveOp;
	using Kernel = cutlass::gemm::kernel::GemmUniversal<Problem, Mainloop, Epilogue>;
	using Gemm = cutlass::gemm::device::GemmUniversalAdapter<Kernel>;
	using SA = typename Kernel::InternalStrideA;
	using SB = typename Kernel::InternalStrideB;
	using SD = typename Kernel::InternalStrideD;
	using Shape3 = typename Problem::UnderlyingProblemShape;
	static_assert(is_same_v<remove_cvref_t<decltype(get<1>(SA{}))>, _1> &&
			      is_same_v<remove_cvref_t<decltype(get<1>(SB{}))>, _1> &&
			      is_same_v<remove_cvref_t<decltype(get<Swap ? 0 : 1>(SD{}))>, _1>,
		      "A and B are K-contiguous, D contiguous along the weight's N");
};

/* The tiles moe_cuda_gg_pick chooses from (`MOEBENCH_CALIB_TILES=1 moebench calibrate` times each on each
 * calibrate shape; docs/PERFORMANCE.md). coop is torch._grouped_mm's tile for large rows on sm90; the others
 * won where it lost: coop12 where row counts are not multiples of 256 (coop's clusters round each expert up
 * to two row tiles), coop256 for the down GEMM of thousands of rows an expert, swap128 for small experts,
 * swapc for the gate|up GEMM of few rows. */
using gg_coop = gg_config<false, false, _128, _256, _64>;
using gg_coop12 = gg_config<false, false, _128, _256, _64, _1, _2>;
using gg_coop256 = gg_config<false, false, _256, _128, _64, _1, _2>;
using gg_swap128 = gg_config<true, true, _128, _128, _64>;
using gg_swapc = gg_config<true, false, _256, _128, _64>;

/* weights travel by value in the launch (so a captured graph keeps them): GG_CHUNK groups per setup launch */
enum { GG_CHUNK = 128 };
struct gg_weights {
	const moe_bf16 *w[GG_CHUNK];
};

template <class C> struct gg_arrays {
	typename C::Shape3 *shape;
	const typename C::T **a, **b;
	typename C::T **d;
	typename C::SA *sa;
	typename C::SB *sb;
	typename C::SD *sd;
};

/* Group g = s * experts + j: expert j's rows [starts[j], starts[j + 1]) of A against weight w[g], written to
 * columns [s * N, (s + 1) * N) of D. */
template <class C>
__global__ void gg_setup_kernel(gg_arrays<C> ar, gg_weights wc, int g0, int cnt, int experts, const int64_t *starts,
				int n, int k, const moe_bf16 *a, moe_bf16 *dd, int64_t ldd, typename C::SA sa,
				typename C::SB sb, typename C::SD sd)
{
	int i = blockIdx.x * blockDim.x + threadIdx.x;
	if (i >= cnt)
		return;
	int g = g0 + i, j = g % experts, s = g / experts;
	int64_t r0 = starts[j], m = starts[j + 1] - r0;
	const typename C::T *rows = (const typename C::T *)(a + r0 * k), *wt = (const typename C::T *)wc.w[i];
	ar.shape[g] = C::swap ? typename C::Shape3(n, (int)m, k) : typename C::Shape3((int)m, n, k);
	ar.a[g] = C::swap ? wt : rows;
	ar.b[g] = C::swap ? rows : wt;
	ar.d[g] = (typename C::T *)(dd + r0 * ldd + (int64_t)s * n);
	ar.sa[g] = sa;
	ar.sb[g] = sb;
	ar.sd[g] = sd;
}

static size_t up256(size_t n) { return (n + 255) & ~(size_t)255; }

/* Buffers are sized for GG_MIN_GROUPS groups and GG_MIN_WS bytes of workspace at least, so that they are
 * allocated once: a captured graph keeps their addresses, which growing would free. */
enum { GG_MIN_GROUPS = 4096 };
static const size_t GG_MIN_WS = (size_t)4 << 20;

template <class C> static size_t gg_args_bytes(size_t g)
{
	return 3 * up256(g * sizeof(void *)) + up256(g * sizeof(typename C::SA)) + up256(g * sizeof(typename C::SB)) +
	       up256(g * sizeof(typename C::SD)) + up256(g * sizeof(typename C::Shape3));
}

/* Carve the argument arrays of `groups` problems out of one device buffer. */
template <class C> static int gg_carve(struct moe_dev *d, int groups, gg_arrays<C> *ar)
{
	size_t g = (size_t)groups, ps = up256(g * sizeof(void *));
	size_t need = gg_args_bytes<C>(g > GG_MIN_GROUPS ? g : GG_MIN_GROUPS);
	MOE_CHECK(cuda_grow(&d->gg_args, &d->gg_args_cap, need));
	char *p = (char *)d->gg_args;
	ar->a = (const typename C::T **)p;
	ar->b = (const typename C::T **)(p + ps);
	ar->d = (typename C::T **)(p + 2 * ps);
	p += 3 * ps;
	ar->sa = (typename C::SA *)p;
	p += up256(g * sizeof(typename C::SA));
	ar->sb = (typename C::SB *)p;
	p += up256(g * sizeof(typename C::SB));
	ar->sd = (typename C::SD *)p;
	p += up256(g * sizeof(typename C::SD));
	ar->shape = (typename C::Shape3 *)p;
	return MOE_OK;
}

template <class C>
static int gg_run(struct moe_dev *d, int experts, int splits, const int64_t *d_starts, int64_t n, int64_t k,
		  const moe_bf16 *a, const moe_bf16 *const *w, moe_bf16 *dd, int64_t ldd)
{
	using Gemm = typename C::Gemm;
	int groups = experts * splits;
	gg_arrays<C> ar;
	MOE_CHECK(gg_carve<C>(d, groups, &ar));
	/* A and B have unit stride along K, D along the weight's N; D's rows may be wider than N (gate | up side by
	 * side) */
	typename C::SA sa{};
	typename C::SB sb{};
	typename C::SD sd{};
	get<0>(sa) = k;
	get<0>(sb) = k;
	get<C::swap ? 1 : 0>(sd) = ldd;
	for (int g0 = 0; g0 < groups; g0 += GG_CHUNK) {
		int cnt = groups - g0 < GG_CHUNK ? groups - g0 : GG_CHUNK;
		gg_weights wc;
		memset(&wc, 0, sizeof wc);
		for (int i = 0; i < cnt; i++)
			wc.w[i] = w[g0 + i];
		gg_setup_kernel<C><<<(cnt + 127) / 128, 128, 0, d->stream>>>(ar, wc, g0, cnt, experts, d_starts, (int)n,
									      (int)k, a, dd, ldd, sa, sb, sd);
		LAUNCHED();
	}
	int dev = 0, sms = 0;
	CU(cudaGetDevice(&dev));
	CU(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
	cutlass::KernelHardwareInfo hw;
	hw.device_id = dev;
	hw.sm_count = sms;
	/* host problem shapes NULL: the persistent grid covers every SM and the kernel reads the sizes */
	typename Gemm::Arguments args{cutlass::gemm::GemmUniversalMode::kGrouped,
				      {groups, ar.shape, nullptr},
				      {ar.a, ar.sa, ar.b, ar.sb},
				      {{}, (const typename C::T **)ar.d, ar.sd, ar.d, ar.sd},
				      hw};
	args.epilogue.thread.alpha = 1.0f;
	args.epilogue.thread.beta = 0.0f; /* C (= D) is never read */
	Gemm gemm;
	if (gemm.can_implement(args) != cutlass::Status::kSuccess)
		return MOE_ERR_UNSUPPORTED;
	size_t ws = Gemm::get_workspace_size(args) + 256;
	MOE_CHECK(cuda_grow(&d->gg_ws, &d->gg_ws_cap, ws > GG_MIN_WS ? ws : GG_MIN_WS));
	cutlass::Status st = gemm.initialize(args, d->gg_ws, d->stream);
	if (st == cutlass::Status::kSuccess)
		st = gemm.run(d->stream);
	if (st != cutlass::Status::kSuccess) {
		fprintf(stderr, "moebench: CUTLASS grouped GEMM failed: %s\n", cutlass::cutlassGetStatusString(st));
		return MOE_ERR_SYSTEM;
	}
	LAUNCHED();
	return MOE_OK;
}

} // namespace moe_gg

using namespace moe_gg;

/* Which instantiation (enum moe_gg_tile) for N x K experts averaging avg_rows rows; h_counts (the experts' row
 * counts, or NULL where they live on the device) lets coop's 2x1 clusters take rows that fill them.
 * MOEBENCH_GG_TILE=NAME forces one. Every tile computes the same bits (the fp32 sums run over K in the same
 * order), so ffn and ffn_dev may pick differently; tests/unit/test_cuda_grouped.c checks it. */
static const char *const gg_tile_names[MOE_GG_NTILES] = {"coop", "coop12", "coop256", "swap128", "swapc"};

extern "C" const char *moe_cuda_gg_tile_name(int t) { return t >= 0 && t < MOE_GG_NTILES ? gg_tile_names[t] : "?"; }

extern "C" int moe_cuda_gg_pick(int experts, const int64_t *h_counts, int64_t avg_rows, int64_t n, int64_t k)
{
	const char *t = getenv("MOEBENCH_GG_TILE");
	for (int i = 0; t && i < MOE_GG_NTILES; i++)
		if (!strcmp(t, gg_tile_names[i]))
			return i;
	static int warned;
	if (t && *t && !warned) { /* a tile that does not exist (pong, an older name, or a typo) is said once */
		warned = 1;
		fprintf(stderr, "moebench: warning: MOEBENCH_GG_TILE=%s is not a tile (coop, coop12, coop256, swap128, "
				"swapc); the tile is picked by size\n", t);
	}
	if (n * k < (8ll << 20)) /* small experts (Qwen3-30B-A3B's 2048 x 768) */
		return MOE_GG_SWAP128;
	if (avg_rows <= 160)
		return k >= n ? MOE_GG_SWAPC : MOE_GG_COOP12;
	int fills = h_counts != NULL; /* every expert's rows a whole number of 2 x 128-row clusters */
	for (int j = 0; fills && j < experts; j++)
		fills = h_counts[j] % 256 == 0;
	if (!fills)
		return MOE_GG_COOP12;
	return avg_rows < 1024 || k > n ? MOE_GG_COOP : MOE_GG_COOP256;
}

extern "C" int moe_cuda_grouped_gemm(struct moe_dev *d, int experts, int splits, const int64_t *d_starts,
				     const int64_t *h_counts, int64_t avg_rows, int64_t n, int64_t k,
				     const moe_bf16 *a, const moe_bf16 *const *w, moe_bf16 *dd, int64_t ldd)
{
	if (experts <= 0 || splits <= 0)
		return MOE_OK;
	if (!moe_cuda_gg_aligned(n, k, ldd, a, dd, w, experts * splits) || n > INT32_MAX || k > INT32_MAX)
		return MOE_ERR_UNSUPPORTED;
	switch (moe_cuda_gg_pick(experts, h_counts, avg_rows, n, k)) {
	case MOE_GG_COOP12:
		return gg_run<gg_coop12>(d, experts, splits, d_starts, n, k, a, w, dd, ldd);
	case MOE_GG_COOP256:
		return gg_run<gg_coop256>(d, experts, splits, d_starts, n, k, a, w, dd, ldd);
	case MOE_GG_SWAP128:
		return gg_run<gg_swap128>(d, experts, splits, d_starts, n, k, a, w, dd, ldd);
	case MOE_GG_SWAPC:
		return gg_run<gg_swapc>(d, experts, splits, d_starts, n, k, a, w, dd, ldd);
	default:
		return gg_run<gg_coop>(d, experts, splits, d_starts, n, k, a, w, dd, ldd);
	}
}
