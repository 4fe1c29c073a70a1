/* The host backend's graph recorder: a capture runs nothing, a replay runs the recording with the inputs of
 * its time (and the host arrays of the capture's), twice alike; a host round trip fails the capture. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "kernels.h"

#define N 16 /* rows of H values */
#define H 4

struct fix {
	const struct moe_backend_ops *be;
	struct moe_dev *dev;
	moe_bf16 *a, *b, *sum, *copy, *ffn_out, *want;
	int32_t *d_counts;
};

static moe_bf16 *bufs(struct fix *f, size_t n)
{
	moe_bf16 *p = f->be->alloc(f->dev, n * sizeof(moe_bf16));
	assert_non_null(p);
	memset(p, 0, n * sizeof(moe_bf16));
	return p;
}

static int setup(void **state)
{
	static struct fix f;
	memset(&f, 0, sizeof(f));
	f.be = moe_backend_find("host");
	assert_non_null(f.be);
	assert_non_null(f.be->capture_begin);
	assert_int_equal(f.be->init(&f.dev, -1), MOE_OK);
	f.a = bufs(&f, N * H), f.b = bufs(&f, N * H), f.sum = bufs(&f, N * H), f.copy = bufs(&f, N * H);
	f.ffn_out = bufs(&f, N * H), f.want = bufs(&f, N * H);
	f.d_counts = f.be->alloc(f.dev, 2 * sizeof(int32_t));
	for (int i = 0; i < N * H; i++) {
		f.a[i] = moe_f32_to_bf16((float)i);
		f.b[i] = moe_f32_to_bf16(0.5f);
	}
	*state = &f;
	return 0;
}

static int teardown(void **state)
{
	struct fix *f = *state;
	void *all[] = {f->a, f->b, f->sum, f->copy, f->ffn_out, f->want, f->d_counts};
	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
		f->be->free(f->dev, all[i]);
	f->be->fini(f->dev);
	return 0;
}

static int all_zero(const moe_bf16 *p, int n)
{
	for (int i = 0; i < n; i++)
		if (p[i])
			return 0;
	return 1;
}

/* Records add, d2d and a scale ffn whose counts and weight pointers live in arrays changed right after. */
static void *record(struct fix *f)
{
	const moe_bf16 *w[2] = {f->a, f->b};
	int64_t counts[2] = {5, 11};
	struct moe_ffn_cfg fc = {.kind = MOE_FFN_SCALE, .hidden = H, .ffn = 1, .nexperts = 2, .first_expert = 3,
				 .d_w1 = w, .d_w3 = w, .d_w2 = w};
	assert_int_equal(f->be->capture_begin(f->dev), MOE_OK);
	assert_int_equal(f->be->add(f->dev, f->a, f->b, N * H, f->sum), MOE_OK);
	assert_int_equal(f->be->d2d(f->dev, f->copy, f->sum, N * H * sizeof(moe_bf16)), MOE_OK);
	assert_int_equal(f->be->ffn(f->dev, &fc, f->sum, counts, NULL, f->ffn_out), MOE_OK);
	counts[0] = counts[1] = 0; /* the caller's array is gone by replay: the record kept its own */
	w[0] = w[1] = NULL;
	void *g = NULL;
	assert_int_equal(f->be->capture_end(f->dev, &g), MOE_OK);
	assert_non_null(g);
	return g;
}

/* What the recorded ops give when run at once on the current inputs. */
static void expected(struct fix *f)
{
	const moe_bf16 *w[2] = {f->a, f->b};
	int64_t counts[2] = {5, 11};
	struct moe_ffn_cfg fc = {.kind = MOE_FFN_SCALE, .hidden = H, .ffn = 1, .nexperts = 2, .first_expert = 3,
				 .d_w1 = w, .d_w3 = w, .d_w2 = w};
	moe_bf16 tmp[N * H];
	assert_int_equal(f->be->add(f->dev, f->a, f->b, N * H, tmp), MOE_OK);
	assert_int_equal(f->be->ffn(f->dev, &fc, tmp, counts, NULL, f->want), MOE_OK);
	assert_memory_equal(f->sum, tmp, sizeof(tmp));
	assert_memory_equal(f->copy, tmp, sizeof(tmp));
	assert_memory_equal(f->ffn_out, f->want, sizeof(tmp));
}

static void test_record_then_replay(void **state)
{
	struct fix *f = *state;
	void *g = record(f);
	assert_true(all_zero(f->sum, N * H)); /* nothing ran while capturing */
	assert_true(all_zero(f->copy, N * H));
	assert_true(all_zero(f->ffn_out, N * H));
	assert_int_equal(f->be->replay(f->dev, g), MOE_OK);
	expected(f);
	assert_false(all_zero(f->ffn_out, N * H));
	/* a second replay reads the inputs as they are then */
	for (int i = 0; i < N * H; i++)
		f->b[i] = moe_f32_to_bf16(-2.0f);
	memset(f->sum, 0, N * H * sizeof(moe_bf16));
	assert_int_equal(f->be->replay(f->dev, g), MOE_OK);
	expected(f);
	assert_true(moe_bf16_to_f32(f->sum[1]) == -1.0f); /* 1 + -2 */
	f->be->graph_free(f->dev, g);
}

/* ffn_dev reads its counts from backend memory when it runs, not when it was recorded. */
static void test_ffn_dev_reads_counts_at_replay(void **state)
{
	struct fix *f = *state;
	const moe_bf16 *w[2] = {f->a, f->b};
	struct moe_ffn_cfg fc = {.kind = MOE_FFN_SCALE, .hidden = H, .ffn = 1, .nexperts = 2, .first_expert = 0,
				 .d_w1 = w, .d_w3 = w, .d_w2 = w};
	f->d_counts[0] = 0, f->d_counts[1] = 0;
	memset(f->ffn_out, 0, N * H * sizeof(moe_bf16));
	assert_int_equal(f->be->capture_begin(f->dev), MOE_OK);
	assert_int_equal(f->be->ffn_dev(f->dev, &fc, f->a, f->d_counts, N, NULL, f->ffn_out), MOE_OK);
	void *g = NULL;
	assert_int_equal(f->be->capture_end(f->dev, &g), MOE_OK);
	f->d_counts[0] = 2, f->d_counts[1] = N - 2;
	assert_int_equal(f->be->replay(f->dev, g), MOE_OK);
	/* scale experts: expert e multiplies by e + 1 */
	assert_true(moe_bf16_to_f32(f->ffn_out[1 * H]) == 1.0f * (1 * H));
	assert_true(moe_bf16_to_f32(f->ffn_out[3 * H]) == 2.0f * (3 * H));
	f->be->graph_free(f->dev, g);
}

static void test_round_trips_fail_the_capture(void **state)
{
	struct fix *f = *state;
	moe_bf16 host[H];
	int64_t counts[2];
	int32_t pos[N];
	for (int op = 0; op < 3; op++) {
		assert_int_equal(f->be->capture_begin(f->dev), MOE_OK);
		assert_int_equal(f->be->add(f->dev, f->a, f->b, N * H, f->sum), MOE_OK);
		int rc = op == 0   ? f->be->d2h(f->dev, host, f->a, sizeof(host))
			 : op == 1 ? f->be->sync(f->dev)
				   : f->be->bucket(f->dev, f->d_counts, 2, 0, 1, 2, counts, pos);
		assert_int_equal(rc, MOE_ERR_UNSUPPORTED);
		void *g = (void *)1;
		assert_int_equal(f->be->capture_end(f->dev, &g), MOE_ERR_UNSUPPORTED);
		assert_null(g);
	}
	/* outside a capture they run as before */
	assert_int_equal(f->be->sync(f->dev), MOE_OK);
	assert_int_equal(f->be->d2h(f->dev, host, f->a, sizeof(host)), MOE_OK);
	assert_memory_equal(host, f->a, sizeof(host));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_record_then_replay),
		cmocka_unit_test(test_ffn_dev_reads_counts_at_replay),
		cmocka_unit_test(test_round_trips_fail_the_capture),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
