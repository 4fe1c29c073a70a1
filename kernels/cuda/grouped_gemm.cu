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

/* One instantiation: bf16 A (rows x K, row-major), B = W (N x K row-major, i.e. column-major K x N), bf16 D
 * (row-major), fp32 accumulation, 2x1 clusters. Pingpong overlaps one warp group's epilogue with the other's
 * MMAs (short K loops per tile: small M or N); cooperative splits a large tile over both. */
template <bool Pong, class TM, class TN, class TK> struct gg_config {
	using T = cutlass::bfloat16_t;
	using LA = cutlass::layout::RowMajor;
	using LB = cutlass::layout::ColumnMajor;
	using LD = cutlass::layout::RowMajor;
	static constexpr int align = 16 / sizeof(T);
	using Tile = Shape<TM, TN, TK>;
	using Cluster = Shape<_2, _1, _1>;
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
			      is_same_v<remove_cvref_t<decltype(get<1>(SD{}))>, _1>,
		      "A, B (= W) and D are K-, K- and N-contiguous");
};

/* The two torch._grouped_mm uses on sm90 (aten GroupMM.cu picks by the average M and N the same way). */
using gg_pong = gg_config<true, _64, _128, _128>;
using gg_coop = gg_config<false, _128, _256, _64>;

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
	ar.shape[g] = typename C::Shape3((int)m, n, k);
	ar.a[g] = (const typename C::T *)(a + r0 * k);
	ar.b[g] = (const typename C::T *)wc.w[i];
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
	/* every operand has unit stride along its second mode (A: K, B: K, D: N); D's rows may be wider than N
	 * (gate | up side by side) */
	typename C::SA sa{};
	typename C::SB sb{};
	typename C::SD sd{};
	get<0>(sa) = k;
	get<0>(sb) = k;
	get<0>(sd) = ldd;
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

/* Which instantiation: MOEBENCH_GG_TILE=pong|coop forces one, else aten's rule (pingpong 64x128x128 when the
 * average rows per group or N is at most 128, cooperative 128x256x64 otherwise). */
extern "C" int moe_cuda_gg_pick(int64_t avg_rows, int64_t n)
{
	const char *t = getenv("MOEBENCH_GG_TILE");
	if (t && !strcmp(t, "pong"))
		return 1;
	if (t && !strcmp(t, "coop"))
		return 0;
	return avg_rows <= 128 || n <= 128;
}

extern "C" int moe_cuda_grouped_gemm(struct moe_dev *d, int experts, int splits, const int64_t *d_starts,
				     int64_t avg_rows, int64_t n, int64_t k, const moe_bf16 *a,
				     const moe_bf16 *const *w, moe_bf16 *dd, int64_t ldd)
{
	if (experts <= 0 || splits <= 0)
		return MOE_OK;
	if (!moe_cuda_gg_aligned(n, k, ldd, a, dd, w, experts * splits) || n > INT32_MAX || k > INT32_MAX)
		return MOE_ERR_UNSUPPORTED;
	if (moe_cuda_gg_pick(avg_rows, n))
		return gg_run<gg_pong>(d, experts, splits, d_starts, n, k, a, w, dd, ldd);
	return gg_run<gg_coop>(d, experts, splits, d_starts, n, k, a, w, dd, ldd);
}
