/* Results: run.json, TSV for plots, and the table a user reads. */
#include "results.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "moe.h"
#include "stats.h"

int moe_write_atomic(const char *path, const char *text, size_t len)
{
	char tmp[4096];
	snprintf(tmp, sizeof(tmp), "%s.tmp.%d", path, (int)getpid());
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return -1;
	size_t off = 0;
	while (off < len) {
		ssize_t w = write(fd, text + off, len - off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			int e = errno;
			close(fd);
			unlink(tmp);
			errno = e;
			return -1;
		}
		off += (size_t)w;
	}
	if (fsync(fd) || close(fd)) {
		int e = errno;
		unlink(tmp);
		errno = e;
		return -1;
	}
	return rename(tmp, path);
}

static double ph(json_t *c, const char *phase, const char *stat)
{
	json_t *v = json_object_get(json_object_get(json_object_get(c, "phases"), phase), stat);
	return v ? json_number_value(v) : -1;
}

static void tsv_tokens(char *buf, size_t len, json_t *c)
{
	size_t k = 0;
	json_t *t;
	size_t i;
	buf[0] = 0;
	json_array_foreach(json_object_get(c, "tokens"), i, t)
	{
		if (k < len)
			k += (size_t)snprintf(buf + k, len - k, "%s%lld", i ? "," : "", (long long)json_integer_value(t));
	}
}

static int64_t total_tokens(json_t *c)
{
	int64_t s = 0;
	size_t i;
	json_t *t;
	json_array_foreach(json_object_get(c, "tokens"), i, t) s += json_integer_value(t);
	return s;
}

static const char *param(json_t *c, const char *k)
{
	const char *v = json_string_value(json_object_get(json_object_get(c, "params"), k));
	return v ? v : "";
}

/* Buffer-backed text builder. */
struct sbuf {
	char *s;
	size_t n, cap;
};

static void sb_printf(struct sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#include <stdarg.h>
static void sb_printf(struct sbuf *b, const char *fmt, ...)
{
	for (;;) {
		va_list ap;
		va_start(ap, fmt);
		int k = vsnprintf(b->s ? b->s + b->n : NULL, b->s ? b->cap - b->n : 0, fmt, ap);
		va_end(ap);
		if (k >= 0 && b->s && b->n + (size_t)k < b->cap) {
			b->n += (size_t)k;
			return;
		}
		b->cap = b->cap * 2 + (size_t)(k > 0 ? k : 0) + 4096;
		b->s = realloc(b->s, b->cap);
		if (!b->s)
			abort();
	}
}

static const char *const tsv_phases[] = {"route", "dispatch", "expert", "combine", "tp_merge", "fetch_wait", "total"};

int moe_results_write(const char *dir, json_t *run)
{
	char path[4096];
	char *js = json_dumps(run, JSON_INDENT(1) | JSON_PRESERVE_ORDER);
	snprintf(path, sizeof(path), "%s/run.json", dir);
	if (!js || moe_write_atomic(path, js, strlen(js))) {
		moe_err("writing %s: %s", path, strerror(errno));
		free(js);
		return -1;
	}
	free(js);
	struct sbuf c = {0}, s = {0}, rk = {0};
	sb_printf(&rk, "# case\trank\tphase\tp50_us\n");
	sb_printf(&c, "# case\tstrategy\tpartition\ttransport\tbackend\tdp\ttp\ttokens\ttokens_total\thidden\texperts\ttopk\tverdict");
	for (size_t k = 0; k < MOE_ARRAY_SIZE(tsv_phases); k++)
		sb_printf(&c, "\t%s_p50_us\t%s_p99_us", tsv_phases[k], tsv_phases[k]);
	sb_printf(&c, "\talgbw_GBps\tbusbw_GBps\n");
	sb_printf(&s, "# case\titer\tphase\tus\n");
	size_t i;
	json_t *cj;
	json_array_foreach(json_object_get(run, "cases"), i, cj)
	{
		char tok[4096];
		tsv_tokens(tok, sizeof(tok), cj);
		const char *name = json_string_value(json_object_get(cj, "name"));
		sb_printf(&c, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%lld\t%s\t%s\t%s\t%s", name, param(cj, "strategy"),
			  param(cj, "partition"), param(cj, "transport"), param(cj, "backend"), param(cj, "dp"), param(cj, "tp"),
			  tok, (long long)total_tokens(cj), param(cj, "hidden"), param(cj, "experts"), param(cj, "topk"),
			  json_string_value(json_object_get(cj, "verdict")));
		for (size_t k = 0; k < MOE_ARRAY_SIZE(tsv_phases); k++)
			sb_printf(&c, "\t%.3f\t%.3f", ph(cj, tsv_phases[k], "p50_us"), ph(cj, tsv_phases[k], "p99_us"));
		json_t *b = json_object_get(cj, "bytes");
		sb_printf(&c, "\t%.4f\t%.4f\n", json_number_value(json_object_get(b, "algbw_GBps")),
			  json_number_value(json_object_get(b, "busbw_GBps")));
		size_t ri;
		json_t *rj;
		json_array_foreach(json_object_get(cj, "ranks"), ri, rj)
		{
			const char *rpk;
			json_t *rarr;
			json_object_foreach(json_object_get(rj, "samples_us"), rpk, rarr)
			{
				if (!json_array_size(rarr))
					continue;
				struct moe_summary su;
				moe_summarize_json(rarr, &su);
				sb_printf(&rk, "%s\t%lld\t%s\t%.3f\n", name, (long long)json_integer_value(json_object_get(rj, "rank")),
					  rpk, su.p50);
			}
		}
		const char *pk;
		json_t *arr;
		json_object_foreach(json_object_get(cj, "samples"), pk, arr)
		{
			size_t j;
			json_t *v;
			json_array_foreach(arr, j, v) sb_printf(&s, "%s\t%zu\t%s\t%.3f\n", name, j, pk, json_number_value(v));
		}
	}
	int rc = 0;
	snprintf(path, sizeof(path), "%s/cases.tsv", dir);
	if (moe_write_atomic(path, c.s, c.n)) {
		moe_err("writing %s: %s", path, strerror(errno));
		rc = -1;
	}
	snprintf(path, sizeof(path), "%s/samples.tsv", dir);
	if (moe_write_atomic(path, s.s, s.n)) {
		moe_err("writing %s: %s", path, strerror(errno));
		rc = -1;
	}
	snprintf(path, sizeof(path), "%s/ranks.tsv", dir);
	if (moe_write_atomic(path, rk.s, rk.n)) {
		moe_err("writing %s: %s", path, strerror(errno));
		rc = -1;
	}
	free(c.s);
	free(s.s);
	free(rk.s);
	return rc;
}

void moe_results_header(FILE *f, json_t *env)
{
	fprintf(f, "# moebench %s (commit %s) on %s, %s\n", json_string_value(json_object_get(env, "version")),
		json_string_value(json_object_get(env, "git_commit")), json_string_value(json_object_get(env, "host")),
		json_string_value(json_object_get(env, "date")));
	fprintf(f, "# kernel %s, %s, %lld CPUs; hwloc API %s, PAPI %s, jansson %s\n",
		json_string_value(json_object_get(env, "kernel")), json_string_value(json_object_get(env, "cpu")),
		(long long)json_integer_value(json_object_get(env, "ncpus")),
		json_string_value(json_object_get(env, "hwloc")), json_string_value(json_object_get(env, "papi")),
		json_string_value(json_object_get(env, "jansson")));
	fprintf(f, "# placement: %s\n", json_string_value(json_object_get(env, "placement_summary")));
	fprintf(f, "# times in microseconds: per iteration the maximum over ranks, then the median (p50) over iterations\n");
	fprintf(f, "%-44s %5s %9s %9s %9s %9s %9s %10s %10s %9s  %s\n", "# case", "ranks", "tokens", "route",
		"dispatch", "expert", "combine", "total_p50", "total_p99", "busbw", "verdict");
}

void moe_results_row(FILE *f, json_t *c)
{
	const char *v = json_string_value(json_object_get(c, "verdict"));
	const char *name = json_string_value(json_object_get(c, "name"));
	int ranks = atoi(param(c, "dp")) * atoi(param(c, "tp"));
	if (strcmp(v, "ok") && strcmp(v, "mismatch")) {
		fprintf(f, "%-44s %5d %9lld  %s: %s\n", name, ranks, (long long)total_tokens(c), v,
			json_string_value(json_object_get(c, "reason")));
		return;
	}
	char bw[32] = "        -";
	double busbw = json_number_value(json_object_get(json_object_get(c, "bytes"), "busbw_GBps"));
	if (busbw > 0)
		snprintf(bw, sizeof(bw), "%8.2fG", busbw);
	fprintf(f, "%-44s %5d %9lld %9.1f %9.1f %9.1f %9.1f %10.1f %10.1f %s  %s", name, ranks, (long long)total_tokens(c),
		ph(c, "route", "p50_us"), ph(c, "dispatch", "p50_us"), ph(c, "expert", "p50_us"), ph(c, "combine", "p50_us"),
		ph(c, "total", "p50_us"), ph(c, "total", "p99_us"), bw, v);
	json_t *rf = json_object_get(c, "roofline");
	if (rf)
		fprintf(f, " (experts %.3g TFLOP/s = %.2g%% of dense GEMM; dispatch+combine %.3g GB/s = %.2g%% of copy)",
			json_number_value(json_object_get(rf, "expert_TFLOPs")),
			json_number_value(json_object_get(rf, "expert_pct_of_gemm")),
			json_number_value(json_object_get(rf, "comm_GBps_per_gpu")),
			json_number_value(json_object_get(rf, "comm_pct_of_copy")));
	json_t *dw = json_object_get(c, "dwdp");
	if (dw)
		fprintf(f, " (dwdp: fetch %.2f GB/s, %.0f%% hidden)", json_number_value(json_object_get(dw, "fetch_GBps")),
			100 * json_number_value(json_object_get(dw, "hidden_fraction")));
	json_t *in = json_object_get(json_object_get(c, "bytes"), "wire_inter_per_rank");
	if (in) /* across nodes (mpirun, srun): what stays on a node and what crosses, per rank and iteration */
		fprintf(f, " (wire/rank: %.3g MB in node, %.3g MB across)",
			json_number_value(json_object_get(json_object_get(c, "bytes"), "wire_intra_per_rank")) * 1e-6,
			json_number_value(in) * 1e-6);
	json_t *fb = json_object_get(c, "first_bad");
	if (fb)
		fprintf(f, " (rank %lld, layer %lld, token %lld, column %lld: %s)",
			(long long)json_integer_value(json_object_get(fb, "rank")),
			(long long)json_integer_value(json_object_get(fb, "layer")),
			(long long)json_integer_value(json_object_get(fb, "token")),
			(long long)json_integer_value(json_object_get(fb, "column")),
			json_string_value(json_object_get(fb, "what")));
	fputc('\n', f);
}

void moe_results_footer(FILE *f, json_t *cases)
{
	size_t i, ok = 0, bad = 0, skipped = 0, err = 0;
	json_t *c;
	json_array_foreach(cases, i, c)
	{
		const char *v = json_string_value(json_object_get(c, "verdict"));
		if (!strcmp(v, "ok"))
			ok++;
		else if (!strcmp(v, "mismatch"))
			bad++;
		else if (!strcmp(v, "skipped"))
			skipped++;
		else
			err++;
	}
	if (!bad && !err)
		fprintf(f, "# OK: %zu case%s passed%s", ok, ok == 1 ? "" : "s", skipped ? "," : "\n");
	else
		fprintf(f, "# FAILED: %zu mismatch, %zu error, %zu ok%s", bad, err, ok, skipped ? "," : "\n");
	if (skipped)
		fprintf(f, " %zu skipped\n", skipped);
}
