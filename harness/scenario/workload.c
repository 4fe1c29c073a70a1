/* Deterministic workload generation (tokens, weights, routing) and routing-trace loading. */
#include "workload.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "outfile.h"

double moe_tensor_scale(const struct moe_params *p, enum moe_tensor t)
{
	switch (t) {
	case MOE_T_X: return 1.0;
	case MOE_T_GATE:
	case MOE_T_W1:
	case MOE_T_W3:
	case MOE_T_SW1:
	case MOE_T_SW3: return 1.0 / sqrt((double)p->hidden);
	case MOE_T_W2:
	case MOE_T_SW2: return 1.0 / sqrt((double)p->ffn);
	default: return 1.0;
	}
}

moe_bf16 moe_gen_elem(const struct moe_params *p, enum moe_tensor t, uint32_t layer, uint64_t row, uint64_t col)
{
	double u = moe_rng_unit((uint64_t)p->seed, t, layer, row, col);
	return moe_f32_to_bf16((float)((2.0 * u - 1.0) * moe_tensor_scale(p, t)));
}

void moe_gen_block(const struct moe_params *p, enum moe_tensor t, uint32_t layer, uint64_t row0, int64_t rows,
		   int64_t cols, moe_bf16 *out)
{
	for (int64_t r = 0; r < rows; r++)
		for (int64_t c = 0; c < cols; c++)
			out[r * cols + c] = moe_gen_elem(p, t, layer, row0 + (uint64_t)r, (uint64_t)c);
}

float moe_gen_bias(const struct moe_params *p, uint32_t layer, int64_t e)
{
	if (!p->route_bias)
		return 0.0f;
	return (float)(0.1 * (2.0 * moe_rng_unit((uint64_t)p->seed, MOE_T_BIAS, layer, (uint64_t)e, 0) - 1.0));
}

/* Draw an expert for slot k; zipf by inverse CDF over ranks 1..E; hot:F sends slot 0 of a fraction F
 * of the tokens to expert 0 and draws the other slots uniformly. */
static int32_t draw_expert(const struct moe_params *p, int64_t k, double u, double u2)
{
	int64_t E = p->experts;
	switch (p->routing.kind) {
	case MOE_ROUTE_ZIPF: {
		double s = p->routing.arg, total = 0;
		for (int64_t e = 0; e < E; e++)
			total += pow((double)(e + 1), -s);
		double x = u * total, acc = 0;
		for (int64_t e = 0; e < E; e++) {
			acc += pow((double)(e + 1), -s);
			if (x < acc)
				return (int32_t)e;
		}
		return (int32_t)(E - 1);
	}
	case MOE_ROUTE_HOT:
		if (k == 0 && u2 < p->routing.arg)
			return 0;
		return (int32_t)(u * (double)E);
	default: return (int32_t)(u * (double)E);
	}
}

void moe_route_synth(const struct moe_params *p, uint32_t layer, uint64_t g, int32_t *idx, float *w)
{
	int64_t K = p->topk, E = p->experts;
	uint64_t seed = (uint64_t)p->seed;
	if (p->routing.kind == MOE_ROUTE_BALANCED) {
		for (int64_t k = 0; k < K; k++)
			idx[k] = (int32_t)((g * (uint64_t)K + (uint64_t)k) % (uint64_t)E);
	} else {
		uint64_t draw = 0;
		for (int64_t k = 0; k < K; k++) {
			for (;;) {
				double u = moe_rng_unit(seed, MOE_T_ROUTE, layer, g, draw++);
				double u2 = moe_rng_unit(seed, MOE_T_ROUTE, layer, g, 1000000 + draw);
				int32_t e = draw_expert(p, k, u, u2);
				int dup = 0;
				for (int64_t j = 0; j < k; j++)
					dup |= idx[j] == e;
				if (!dup || draw > 64 * (uint64_t)K) {
					if (dup) /* pathological distribution: take the lowest unused id */
						for (e = 0; e < E; e++) {
							int used = 0;
							for (int64_t j = 0; j < k; j++)
								used |= idx[j] == e;
							if (!used)
								break;
						}
					idx[k] = e;
					break;
				}
			}
		}
	}
	float sum = 0;
	for (int64_t k = 0; k < K; k++) {
		w[k] = (float)(0.05 + moe_rng_unit(seed, MOE_T_ROUTE, layer, g, 2000000 + (uint64_t)k));
		sum += w[k];
	}
	for (int64_t k = 0; k < K; k++) {
		if (p->route_norm)
			w[k] = w[k] / (sum + 1e-20f);
		w[k] *= (float)p->route_scale;
	}
}

int moe_trace_load(const char *path, int64_t experts, struct moe_trace *tr, char *err, size_t errlen)
{
	memset(tr, 0, sizeof(*tr));
	char why[1024];
	FILE *f = moe_open_input(path, MOE_TRACE_MAX_BYTES, why, sizeof(why));
	if (!f) {
		snprintf(err, errlen, "%s", why);
		return -1;
	}
	char line[65536];
	int lineno = 0;
	int64_t cap = 0;
	int rc = -1;
	while (fgets(line, sizeof(line), f)) {
		lineno++;
		size_t len = strlen(line);
		if (len == sizeof(line) - 1 && line[len - 1] != '\n') {
			snprintf(err, errlen, "%s:%d: line longer than %zu characters", path, lineno, sizeof(line) - 2);
			goto out;
		}
		char *s = line;
		while (isspace((unsigned char)*s))
			s++;
		if (!*s || *s == '#')
			continue;
		int64_t k = 0;
		int32_t ids[64];
		while (*s) {
			char *end;
			errno = 0;
			long v = strtol(s, &end, 10);
			if (end == s || errno) {
				snprintf(err, errlen, "%s:%d: expected an expert id, got '%.20s'", path, lineno, s);
				goto out;
			}
			if (v < 0 || v >= experts) {
				snprintf(err, errlen, "%s:%d: expert id %ld out of range [0, %lld)", path, lineno, v,
					 (long long)experts);
				goto out;
			}
			if (k == 64) {
				snprintf(err, errlen, "%s:%d: more than 64 expert ids on one line", path, lineno);
				goto out;
			}
			ids[k++] = (int32_t)v;
			s = end;
			while (isspace((unsigned char)*s) || *s == ',')
				s++;
		}
		if (tr->ntokens == 0)
			tr->topk = k;
		else if (k != tr->topk) {
			snprintf(err, errlen, "%s:%d: %lld expert ids, but earlier lines have %lld", path, lineno,
				 (long long)k, (long long)tr->topk);
			goto out;
		}
		if (tr->ntokens == cap) {
			cap = cap ? 2 * cap : 1024;
			int32_t *n = realloc(tr->ids, (size_t)(cap * tr->topk) * sizeof(int32_t));
			if (!n) {
				snprintf(err, errlen, "%s: out of memory", path);
				goto out;
			}
			tr->ids = n;
		}
		memcpy(tr->ids + tr->ntokens * tr->topk, ids, (size_t)k * sizeof(int32_t));
		tr->ntokens++;
	}
	if (ferror(f)) {
		snprintf(err, errlen, "%s: read error", path);
		goto out;
	}
	if (tr->ntokens == 0) {
		snprintf(err, errlen, "%s: no routed tokens in the trace", path);
		goto out;
	}
	rc = 0;
out:
	fclose(f);
	if (rc)
		moe_trace_free(tr);
	return rc;
}

void moe_trace_free(struct moe_trace *tr)
{
	free(tr->ids);
	memset(tr, 0, sizeof(*tr));
}
