/* Unit tests for calibrate's tables and text (calib_shapes.h, calib_torch.c): each shape's expert rows add up to
 * the equal case's and unequal ones spread as said; calibrate's KEY<TAB>NUMBER lines become JSON and nothing
 * else does; the ratio lines divide moebench by torch and find the best expert mode. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "calib_shapes.h"
#include "calibrate.h"

static void test_counts(void **state)
{
	(void)state;
	for (int i = 0; i < MOE_CALIB_NSHAPES; i++) {
		const struct moe_calib_shape *s = &moe_calib_shapes[i];
		int64_t *c = calloc((size_t)s->ne, sizeof(int64_t)), total = 0, lo = INT64_MAX, hi = 0;
		moe_calib_counts(s, c);
		for (int64_t j = 0; j < s->ne; j++) {
			total += c[j];
			lo = c[j] < lo ? c[j] : lo;
			hi = c[j] > hi ? c[j] : hi;
		}
		assert_int_equal(total, s->ne * s->rows);
		if (s->unequal) {
			/* half to 1.5 times the mean, give or take the one row of rounding */
			assert_true(lo >= s->rows / 2 && lo <= s->rows / 2 + 1);
			assert_true(hi >= s->rows * 3 / 2 - 1 && hi <= s->rows * 3 / 2 + 1);
			assert_true(c[1] > c[0] && c[2] < c[1]); /* interleaved, not sorted */
		} else {
			assert_int_equal(lo, s->rows);
			assert_int_equal(hi, s->rows);
		}
		free(c);
	}
}

static void test_parse_text(void **state)
{
	(void)state;
	json_t *o = moe_calib_parse_text("# NVIDIA H200, 132 SMs\n"
					 "copy_GBps\t4278.5\t# cudaMemcpy\n"
					 "permute_GBps\t3400.0\t80%\t# bucket\n"
					 "note\tnot a number\n"
					 "\tno key\n"
					 "route_ms\t0.125");
	assert_int_equal(json_object_size(o), 3);
	assert_true(json_number_value(json_object_get(o, "copy_GBps")) == 4278.5);
	assert_true(json_number_value(json_object_get(o, "permute_GBps")) == 3400.0);
	assert_true(json_number_value(json_object_get(o, "route_ms")) == 0.125);
	json_decref(o);
}

static void test_ratios(void **state)
{
	(void)state;
	json_t *cal = json_pack("{s:f, s:f, s:f, s:f, s:f, s:f, s:{s:f, s:f, s:f}, s:{s:s, s:s}}", "gemm_TFLOPs", 800.0,
				"experts_a_grouped_TFLOPs", 300.0, "experts_a_loop_TFLOPs", 600.0,
				"experts_a_dense_TFLOPs", 900.0, "experts_a-b_loop_TFLOPs", 990.0,
				"experts_a_x_y_TFLOPs", 999.0, "torch", "gemm_TFLOPs", 400.0,
				"experts_a_grouped_TFLOPs", 500.0, "layer_m_graph_ms", 2.0, "torch_env", "torch",
				"1.0", "device", "D");
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);
	moe_torch_anchor_ratios(cal, f);
	fclose(f);
	assert_non_null(strstr(text, "torch_gemm_TFLOPs\t400.000\t2.00\t# moebench 800.000\n"));
	/* the best mode of shape a: loop (dense, other shapes and keys with more fields are not modes of it) */
	assert_non_null(strstr(text, "torch_experts_a_grouped_TFLOPs\t500.000\t0.60\t# moebench 300.000; "
				     "moebench's best mode (loop) 600.0: 1.20\n"));
	assert_non_null(strstr(text, "torch_layer_m_graph_ms\t2.000\t-\t"));
	free(text);
	json_decref(cal);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_counts),
		cmocka_unit_test(test_parse_text),
		cmocka_unit_test(test_ratios),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
