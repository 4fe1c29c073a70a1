/* What the GPU unit tests (test_cuda_*.c) share: EXPECT, the host and cuda backends, and copies to and from
 * the cuda backend's memory. */
#ifndef MOE_GPU_TEST_H
#define MOE_GPU_TEST_H

#include <stdio.h>
#include <stdlib.h>

#include "kernels.h"

static int failures;
#define EXPECT(cond, ...)                                                  \
	do {                                                               \
		if (!(cond)) {                                             \
			failures++;                                        \
			fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__); \
			fprintf(stderr, __VA_ARGS__);                      \
			fputc('\n', stderr);                               \
		}                                                          \
	} while (0)

static const struct moe_backend_ops *H __attribute__((unused)), *C;
static struct moe_dev *hd __attribute__((unused)), *cd;

/* Both backends opened (cd on GPU 0): 0, or 77 after saying why the test skips (no CUDA backend, no GPU). */
static __attribute__((unused)) int gpu_test_open(void)
{
	H = moe_backend_find("host");
	C = moe_backend_find("cuda");
	if (!C) {
		printf("SKIP: the CUDA backend is not built\n");
		return 77;
	}
	if (C->init(&cd, 0) != MOE_OK) {
		printf("SKIP: no usable GPU\n");
		return 77;
	}
	H->init(&hd, -1);
	return 0;
}

/* n bytes (16 when n is 0) of the cuda backend's memory, zeroed */
static __attribute__((unused)) void *dalloc(size_t n)
{
	void *p = C->alloc(cd, n ? n : 16);
	C->memset(cd, p, 0, n ? n : 16);
	return p;
}

static __attribute__((unused)) void *up(const void *h, size_t n)
{
	void *d = dalloc(n);
	if (n)
		C->h2d(cd, d, h, n);
	return d;
}

/* a malloc'd copy of n bytes of device memory, once the device is done writing them */
static __attribute__((unused)) void *down(const void *d, size_t n)
{
	void *h = malloc(n ? n : 1);
	C->sync(cd);
	if (n)
		C->d2h(cd, h, d, n);
	return h;
}

#endif
