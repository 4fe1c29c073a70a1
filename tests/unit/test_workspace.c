/* Workspace canaries catch a write one byte past either end, and name where the buffer was allocated. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "strategy.h"

static void test_canaries(void **state)
{
	(void)state;
	struct moe_ctx ctx;
	memset(&ctx, 0, sizeof(ctx));
	ctx.be = moe_backend_find("host");
	assert_non_null(ctx.be);
	assert_int_equal(ctx.be->init(&ctx.dev, -1), MOE_OK);
	char why[512];
	unsigned char *a = MOE_WS(&ctx, 0, 100), *b = MOE_WS(&ctx, 0, 64);
	assert_non_null(a);
	assert_non_null(b);
	assert_true(ctx.ws_bytes >= 164);
	memset(a, 1, 100); /* the whole buffer, exactly */
	memset(b, 2, 64);
	assert_int_equal(moe_ws_check(&ctx, why, sizeof(why)), MOE_OK);
	a[100] = 7; /* one past the end */
	assert_int_equal(moe_ws_check(&ctx, why, sizeof(why)), MOE_ERR_MISMATCH);
	assert_non_null(strstr(why, "test_workspace.c:"));
	assert_non_null(strstr(why, "canary after"));
	assert_non_null(strstr(why, "(100 bytes)"));
	a[100] = 0xa5; /* restored */
	assert_int_equal(moe_ws_check(&ctx, why, sizeof(why)), MOE_OK);
	b[-1] = 0; /* one before the start */
	assert_int_equal(moe_ws_check(&ctx, why, sizeof(why)), MOE_ERR_MISMATCH);
	assert_non_null(strstr(why, "canary before"));
	moe_ws_release(&ctx);
	ctx.be->fini(ctx.dev);
}

int main(void)
{
	const struct CMUnitTest tests[] = {cmocka_unit_test(test_canaries)};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
