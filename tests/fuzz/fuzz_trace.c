/* libFuzzer target for the routing-trace reader (moe_trace_load / moe_trace_free). */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "scratch.h"
#include "workload.h"

/* Input layout: two bytes choose the expert count (1..4096, the range the experts key allows),
 * the rest is the trace file. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 2)
		return 0;
	int64_t experts = 1 + (int64_t)((data[0] | (unsigned)data[1] << 8) % 4096);
	data += 2;
	size -= 2;
	const char *path = scratch_write("trace", data, size);
	struct moe_trace tr;
	char err[512];
	err[0] = 0;
	if (moe_trace_load(path, experts, &tr, err, sizeof(err))) {
		if (!memchr(err, 0, sizeof(err)) || !err[0] || tr.ids || tr.ntokens)
			__builtin_trap();
	} else {
		if (tr.ntokens < 1 || tr.topk < 1 || tr.topk > 64 || !tr.ids)
			__builtin_trap();
		for (int64_t i = 0; i < tr.ntokens * tr.topk; i++)
			if (tr.ids[i] < 0 || tr.ids[i] >= experts)
				__builtin_trap();
	}
	moe_trace_free(&tr);
	if (tr.ids || tr.ntokens)
		__builtin_trap();
	return 0;
}
