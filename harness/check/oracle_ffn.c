/* The oracle's swiglu reference: per-expert float64 GEMMs on every CPU, with per-element error bounds. */
#include "oracle_int.h"

#include <cblas.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* Weight doubles generated per thread before one GEMM (16 MiB): every GEMM call repacks the m token rows it
 * multiplies, so few wide calls beat many narrow ones (at 16 threads and DeepSeek-V3 width, one call per thread
 * and expert); the GEMM's output is held to the same size, so a hot expert's m does not blow it up. */
#define WCHUNK ((int64_t)1 << 21)
#define MINROWS 32

/* Weight rows of width w per GEMM whose output has m rows: as many as the chunk holds, at least MINROWS. */
static int64_t chunk_rows(int64_t w, int64_t m)
{
	int64_t big = w > m ? w : m;
	return WCHUNK / big > MINROWS ? WCHUNK / big : MINROWS;
}

/* One expert (or the shared experts) at a time; every thread works on it, split by weight rows. */
struct ffn_job {
	const struct moe_params *p;
	uint32_t layer;
	int nthreads;
	pthread_barrier_t bar;
	int64_t H, n, K;
	const double *u;     /* n x H rank inputs */
	const int32_t *idx;  /* n x K */
	const float *w;
	double *yref, *yb;   /* n x H */
	/* the expert in hand */
	int64_t e, F, m;     /* e = -1: the shared experts */
	int64_t *slot;       /* m slots: token*K + k (shared: token*K) */
	double *us, *h, *dh; /* m x H inputs, m x F activations and their bounds */
	double *du;          /* m: the L2 norm of the input's own rounding (score_before_experts) */
	double *l1;          /* m: the inputs' L1 norms */
	int stop, rc;
};

static void tensors(const struct ffn_job *j, enum moe_tensor *t1, enum moe_tensor *t3, enum moe_tensor *t2,
		    uint64_t *r1, uint64_t *r2)
{
	int sh = j->e < 0;
	*t1 = sh ? MOE_T_SW1 : MOE_T_W1;
	*t3 = sh ? MOE_T_SW3 : MOE_T_W3;
	*t2 = sh ? MOE_T_SW2 : MOE_T_W2;
	*r1 = sh ? 0 : (uint64_t)(j->e * j->F);
	*r2 = sh ? 0 : (uint64_t)(j->e * j->H);
}

static double coef(const struct ffn_job *j, int64_t r)
{
	if (j->e < 0 || j->p->score_before_experts)
		return 1.0;
	return (double)j->w[j->slot[r]];
}

/* Inputs of this thread's share of the expert's rows. */
static void gather(struct ffn_job *j, int t)
{
	int64_t H = j->H;
	for (int64_t r = j->m * t / j->nthreads; r < j->m * (t + 1) / j->nthreads; r++) {
		const double *x = j->u + (j->slot[r] / j->K) * H;
		double s = j->e >= 0 && j->p->score_before_experts ? (double)j->w[j->slot[r]] : 1.0, q = 0, a = 0;
		for (int64_t c = 0; c < H; c++) {
			j->us[r * H + c] = s * x[c];
			q += x[c] * x[c];
			a += fabs(s * x[c]);
		}
		j->l1[r] = a;
		/* score_before_experts stores w*x as bf16: each element within u_bf of itself */
		j->du[r] = s != 1.0 ? ORC_UBF * fabs(s) * sqrt(q) : 0;
	}
}

/* silu(a) * b and its bound for weight rows [f0, f1) (docs/VERIFICATION.md §3). W1's and W3's rows share one
 * GEMM (wb holds W1's rows, then W3's), so the token rows are packed once for both. */
static void gate_up(struct ffn_job *j, int64_t f0, int64_t f1, double *wb, double *g)
{
	int64_t H = j->H, F = j->F, m = j->m, nb = f1 - f0;
	enum moe_tensor t1, t3, t2;
	uint64_t r1, r2;
	tensors(j, &t1, &t3, &t2, &r1, &r2);
	double s1 = orc_scale(j->p, t1);
	for (int64_t f = f0; f < f1; f++) {
		orc_gen_row(j->p, t1, j->layer, r1 + (uint64_t)f, H, wb + (f - f0) * H);
		orc_gen_row(j->p, t3, j->layer, r1 + (uint64_t)f, H, wb + (nb + f - f0) * H);
	}
	cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)m, (int)(2 * nb), (int)H, 1.0, j->us, (int)H, wb,
		    (int)H, 0.0, g, (int)(2 * nb));
	for (int64_t r = 0; r < m; r++) {
		double l1 = j->l1[r];
		/* fp32 accumulation and the input's own rounding, both as independent rounding errors */
		double acc = ORC_LAMBDA * (sqrt((double)H + 2) * ORC_U32 * s1 * l1 + s1 * j->du[r]);
		for (int64_t q = 0; q < nb; q++) {
			double a = g[r * 2 * nb + q], b = g[r * 2 * nb + nb + q];
			double sg = 1.0 / (1.0 + exp(-a)), hv = a * sg * b;
			double da = acc + ORC_UBF * fabs(a), db = acc + ORC_UBF * fabs(b);
			/* |silu'| <= 1.1; the product, expf and the divide round in fp32; the activation is stored as bf16 */
			double dhv = 1.1 * da * (fabs(b) + db) + fabs(a * sg) * db +
				     (ORC_UBF + 16 * ORC_U32) * (fabs(hv) + 1.1 * da * (fabs(b) + db) + fabs(a * sg) * db);
			j->h[r * F + f0 + q] = hv * coef(j, r);
			j->dh[r * F + f0 + q] = dhv;
		}
	}
}

/* Output columns [c0, c1): o = h W2^T, added to the tokens' references with the bound of each term. */
static void down(struct ffn_job *j, int64_t c0, int64_t c1, double *w2, double *o, const double *dh2,
		 const double *h1)
{
	int64_t H = j->H, F = j->F, m = j->m;
	enum moe_tensor t1, t3, t2;
	uint64_t r1, r2;
	tensors(j, &t1, &t3, &t2, &r1, &r2);
	double s2 = orc_scale(j->p, t2);
	for (int64_t c = c0; c < c1; c++)
		orc_gen_row(j->p, t2, j->layer, r2 + (uint64_t)c, F, w2 + (c - c0) * F);
	int64_t nb = c1 - c0;
	cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)m, (int)nb, (int)F, 1.0, j->h, (int)F, w2, (int)F, 0.0, o,
		    (int)nb);
	for (int64_t r = 0; r < m; r++) {
		double cf = fabs(coef(j, r)), tok = (double)(j->slot[r] / j->K);
		/* activation errors and the fp32 sum of F terms are independent roundings: lambda * max|W2| * ||dh||_2 and
		 * lambda sqrt(F) u max|W2| ||h||_1; the expert's output is stored as bf16; the combine's fma rounds in fp32 */
		double prop = ORC_LAMBDA * (sqrt((double)F + 2) * ORC_U32 * s2 * h1[r] + s2 * sqrt(dh2[r]) * cf);
		for (int64_t q = 0; q < nb; q++) {
			double v = o[r * nb + q];
			size_t at = (size_t)tok * (size_t)H + (size_t)(c0 + q);
			j->yref[at] += v;
			j->yb[at] += prop + (ORC_UBF + (double)(j->K + 2) * ORC_U32) * (fabs(v) + prop);
		}
	}
}

struct ffn_thread {
	struct ffn_job *j;
	int t;
	pthread_t tid;
};

/* A share of n rows in chunks of at most lim, sized alike so that no thread waits on a runt. */
static int64_t chunk_of(int64_t n, int64_t lim)
{
	int64_t k = (n + lim - 1) / lim;
	return k ? (n + k - 1) / k : 1;
}

/* Per thread: the activations' norms over all m rows (cheap next to the GEMMs), then its share of outputs. */
static void down_share(struct ffn_job *j, int t, double *w2, double *o, double *dh2, double *h1)
{
	for (int64_t r = 0; r < j->m; r++) {
		double s = 0, a = 0;
		for (int64_t f = 0; f < j->F; f++) {
			s += j->dh[r * j->F + f] * j->dh[r * j->F + f];
			a += fabs(j->h[r * j->F + f]);
		}
		dh2[r] = s;
		h1[r] = a;
	}
	int64_t c0 = j->H * t / j->nthreads, c1 = j->H * (t + 1) / j->nthreads;
	int64_t cb = chunk_of(c1 - c0, chunk_rows(j->F, j->m));
	for (int64_t c = c0; c < c1; c += cb)
		down(j, c, c + cb < c1 ? c + cb : c1, w2, o, dh2, h1);
}

static void *worker(void *arg)
{
	struct ffn_job *j = ((struct ffn_thread *)arg)->j;
	int t = ((struct ffn_thread *)arg)->t;
	/* a chunk of weight rows: W1's and W3's of width H, or W2's of width F (chunk_rows' bounds) */
	int64_t Fmax = j->p->ffn * (j->p->shared_experts > 1 ? j->p->shared_experts : 1);
	int64_t wide = j->H > Fmax ? j->H : Fmax;
	double *wb = malloc((size_t)(WCHUNK > 2 * MINROWS * wide ? WCHUNK : 2 * MINROWS * wide) * sizeof(double));
	double *g = NULL, *dh2 = NULL, *h1 = NULL; /* g: the GEMM's output, m x (2 x W1 rows) or m x W2 rows */
	int64_t cap = 0, gcap = 0;
	for (;;) {
		pthread_barrier_wait(&j->bar); /* the main thread set up the next expert */
		if (j->stop)
			break;
		int64_t fl = chunk_rows(2 * j->H, 2 * j->m), cl = chunk_rows(j->F, j->m);
		int64_t gn = j->m * (2 * fl > cl ? 2 * fl : cl);
		if (j->m > cap) {
			cap = j->m;
			free(dh2), free(h1);
			dh2 = malloc((size_t)cap * sizeof(double));
			h1 = malloc((size_t)cap * sizeof(double));
		}
		if (gn > gcap) {
			gcap = gn;
			free(g);
			g = malloc((size_t)gcap * sizeof(double));
		}
		int ok = wb && g && dh2 && h1;
		if (ok)
			gather(j, t);
		pthread_barrier_wait(&j->bar);
		int64_t f0 = j->F * t / j->nthreads, f1 = j->F * (t + 1) / j->nthreads, fb = chunk_of(f1 - f0, fl);
		for (int64_t f = f0; ok && f < f1; f += fb)
			gate_up(j, f, f + fb < f1 ? f + fb : f1, wb, g);
		pthread_barrier_wait(&j->bar);
		if (ok)
			down_share(j, t, wb, g, dh2, h1);
		else
			j->rc = MOE_ERR_NOMEM;
		pthread_barrier_wait(&j->bar); /* the expert is done: buffers may be reused */
	}
	free(wb), free(g), free(dh2), free(h1);
	return NULL;
}

/* Hand the workers one expert (its slots listed in j->slot) and wait until they are done with it. */
static void run_expert(struct ffn_job *j, int64_t e, int64_t F, int64_t m)
{
	j->e = e;
	j->F = F;
	j->m = m;
	pthread_barrier_wait(&j->bar); /* go */
	pthread_barrier_wait(&j->bar); /* gathered */
	pthread_barrier_wait(&j->bar); /* activations */
	pthread_barrier_wait(&j->bar); /* outputs */
}

static int start(struct ffn_job *j, struct ffn_thread *th)
{
	if (pthread_barrier_init(&j->bar, NULL, (unsigned)j->nthreads + 1))
		return MOE_ERR_NOMEM;
	for (int t = 0; t < j->nthreads; t++) {
		th[t] = (struct ffn_thread){j, t, 0};
		/* the barrier counts every thread: with one missing the others would wait forever */
		if (pthread_create(&th[t].tid, NULL, worker, &th[t]))
			abort();
	}
	return MOE_OK;
}

int orc_experts(const struct moe_params *p, uint32_t layer, int64_t n, const double *u, const int32_t *idx,
		const float *w, double *yref, double *yb)
{
	int64_t H = p->hidden, K = p->topk, E = p->experts, Fmax = p->ffn * (p->shared_experts > 1 ? p->shared_experts : 1);
	if (n == 0)
		return MOE_OK;
	struct ffn_job j = {.p = p, .layer = layer, .H = H, .n = n, .K = K, .u = u, .idx = idx, .w = w,
			    .yref = yref, .yb = yb};
	int64_t *cnt = calloc((size_t)E + 1, sizeof(int64_t));
	int64_t mmax = n;
	for (int64_t i = 0; i < n * K; i++)
		cnt[idx[i]]++;
	for (int64_t e = 0; e < E; e++)
		mmax = cnt[e] > mmax ? cnt[e] : mmax;
	j.slot = malloc((size_t)(mmax + 1) * sizeof(int64_t));
	j.us = malloc((size_t)(mmax * H + 1) * sizeof(double));
	j.h = malloc((size_t)(mmax * Fmax + 1) * sizeof(double));
	j.dh = malloc((size_t)(mmax * Fmax + 1) * sizeof(double));
	j.du = malloc((size_t)(mmax + 1) * sizeof(double));
	j.l1 = malloc((size_t)(mmax + 1) * sizeof(double));
	int ncpu = orc_ncpu();
	struct ffn_thread *th = malloc((size_t)ncpu * sizeof(*th));
	int rc = MOE_ERR_NOMEM;
	if (!cnt || !j.slot || !j.us || !j.h || !j.dh || !j.du || !j.l1 || !th)
		goto out;
	memset(yref, 0, (size_t)(n * H) * sizeof(double));
	memset(yb, 0, (size_t)(n * H) * sizeof(double));
	/* every thread calls BLAS on its own share: BLAS's own threads would only fight them */
	int blas_threads = openblas_get_num_threads();
	openblas_set_num_threads(1);
	j.nthreads = ncpu;
	if ((rc = start(&j, th)) != MOE_OK)
		goto out;
	if (p->shared_experts) {
		for (int64_t i = 0; i < n; i++)
			j.slot[i] = i * K;
		run_expert(&j, -1, p->ffn * p->shared_experts, n);
	}
	for (int64_t e = 0; e < E; e++) {
		int64_t m = 0;
		for (int64_t i = 0; i < n * K; i++)
			if (idx[i] == e)
				j.slot[m++] = i;
		if (m)
			run_expert(&j, e, p->ffn, m);
	}
	j.stop = 1;
	pthread_barrier_wait(&j.bar);
	for (int t = 0; t < j.nthreads; t++)
		pthread_join(th[t].tid, NULL);
	pthread_barrier_destroy(&j.bar);
	openblas_set_num_threads(blas_threads);
	rc = j.rc;
out:
	free(cnt), free(j.slot), free(j.us), free(j.h), free(j.dh), free(j.du), free(j.l1), free(th);
	return rc;
}
