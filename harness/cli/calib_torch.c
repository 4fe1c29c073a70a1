/* calibrate's PyTorch anchors: scripts/torch_anchor.py times the same shapes, its figures land beside ours. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "calib_shapes.h"
#include "calibrate.h"
#include "params.h"

#define ANCHOR_SCRIPT "torch_anchor.py"
#define ANCHOR_MAX_OUT ((size_t)16 << 20)

/* Figures of calibrate's text: "KEY<TAB>NUMBER..." lines; comments and anything else are left out. */
json_t *moe_calib_parse_text(const char *text)
{
	json_t *o = json_object();
	for (const char *l = text; l && *l;) {
		const char *nl = strchr(l, '\n'), *tab = strchr(l, '\t');
		size_t len = nl ? (size_t)(nl - l) : strlen(l);
		if (*l != '#' && tab && tab < l + len && tab > l && (size_t)(tab - l) < 256) {
			char key[256], *end;
			memcpy(key, l, (size_t)(tab - l));
			key[tab - l] = 0;
			double v = strtod(tab + 1, &end);
			if (end != tab + 1 && (*end == '\t' || *end == '\n' || *end == 0 || *end == ' '))
				json_object_set_new(o, key, json_real(v));
		}
		l = nl ? nl + 1 : NULL;
	}
	return o;
}

/* The layer models the anchors time, with their routing as the scenario model table has it. */
static json_t *layer_spec(const char *model, int64_t tokens)
{
	struct moe_params p;
	moe_params_defaults(&p);
	if (moe_model_apply(&p, model))
		return NULL;
	return json_pack("{s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:s, s:b, s:b, s:f}", "name", model, "tokens",
			 (json_int_t)tokens, "hidden", (json_int_t)p.hidden, "ffn", (json_int_t)p.ffn, "experts",
			 (json_int_t)p.experts, "topk", (json_int_t)p.topk, "groups", (json_int_t)p.groups,
			 "topk_groups", (json_int_t)p.topk_groups, "shared", (json_int_t)p.shared_experts, "score",
			 p.score == MOE_SCORE_SIGMOID ? "sigmoid" : "softmax", "norm", p.route_norm, "bias",
			 p.route_bias, "scale", p.route_scale);
}

/* What the script times, from the tables calibrate times: repetitions as calibrate.cu's, the expert shapes
 * with each expert's rows, the one-GPU layers. */
json_t *moe_torch_anchor_spec(void)
{
	json_t *experts = json_array(), *layers = json_array();
	/* every shape, then the equal-rows ones split by zipf routing as calibrate splits them ("<name>-zipf") */
	for (int i = 0; i < 2 * MOE_CALIB_NSHAPES; i++) {
		const struct moe_calib_shape *s = &moe_calib_shapes[i % MOE_CALIB_NSHAPES];
		int zipf = i >= MOE_CALIB_NSHAPES;
		if (zipf && s->unequal)
			continue;
		int64_t *counts = calloc((size_t)s->ne, sizeof(int64_t));
		json_t *c = json_array();
		if (zipf)
			moe_calib_zipf_counts(s->ne, s->ne * s->rows, counts);
		else
			moe_calib_counts(s, counts);
		for (int64_t j = 0; j < s->ne; j++)
			json_array_append_new(c, json_integer(counts[j]));
		free(counts);
		char name[128];
		snprintf(name, sizeof(name), "%s%s", s->name, zipf ? "-zipf" : "");
		json_array_append_new(experts, json_pack("{s:s, s:I, s:I, s:o}", "name", name, "hidden",
							 (json_int_t)s->h, "ffn", (json_int_t)s->f, "counts", c));
	}
	json_array_append_new(layers, layer_spec("deepseek-v3", 4096));
	json_array_append_new(layers, layer_spec("qwen3-30b-a3b", 4096));
	return json_pack("{s:i, s:i, s:I, s:i, s:i, s:i, s:i, s:i, s:o, s:o}", "warmup", 2, "trials", 5, "copy_bytes",
			 (json_int_t)2 << 30, "copy_reps", 10, "gemm_n", 8192, "gemm_reps", 10, "experts_reps", 10,
			 "layer_reps", 10, "experts", experts, "layers", layers);
}

/* The script: beside the binary (a bundle), in the source tree the binary was built from, or where
 * MOEBENCH_TORCH_ANCHOR says. */
static int find_script(char *path, size_t n)
{
	const char *env = getenv("MOEBENCH_TORCH_ANCHOR");
	if (env && *env) {
		snprintf(path, n, "%s", env);
		return access(path, R_OK);
	}
	char exe[PATH_MAX];
	ssize_t len = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	if (len > 0) {
		exe[len] = 0;
		char *slash = strrchr(exe, '/');
		if (slash)
			*slash = 0;
		const char *rel[] = {"scripts/", "../scripts/", "../../scripts/"};
		for (size_t i = 0; i < sizeof(rel) / sizeof(rel[0]); i++) {
			snprintf(path, n, "%s/%s" ANCHOR_SCRIPT, exe, rel[i]);
			if (!access(path, R_OK))
				return 0;
		}
	}
	snprintf(path, n, "%s/scripts/" ANCHOR_SCRIPT, MOE_SOURCE_DIR);
	return access(path, R_OK);
}

static double mono_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* The child: its own process group (a timeout kills all it started), the spec on stdin, stdout to us. */
static pid_t spawn(const char *py, const char *script, int in[2], int out[2])
{
	pid_t pid = fork();
	if (pid == 0) {
		setpgid(0, 0);
		dup2(in[0], 0);
		dup2(out[1], 1);
		close(in[0]);
		close(in[1]);
		close(out[0]);
		close(out[1]);
		execlp(py, py, script, (char *)NULL);
		_exit(127);
	}
	close(in[0]);
	close(out[1]);
	return pid;
}

/* Reads the child's stdout until it closes or the deadline passes (then its group is killed: *timed_out). */
static char *collect(int fd, pid_t pid, double deadline, int *timed_out)
{
	size_t len = 0, cap = 4096;
	char *buf = malloc(cap);
	*timed_out = 0;
	for (;;) {
		double left = deadline - mono_s();
		if (left <= 0) {
			*timed_out = 1;
			kill(-pid, SIGKILL);
			kill(pid, SIGKILL);
			break;
		}
		struct pollfd p = {fd, POLLIN, 0};
		int r = poll(&p, 1, (int)(left * 1000) + 1);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			continue; /* the deadline check above ends it */
		if (len + 4096 > cap && cap < ANCHOR_MAX_OUT)
			buf = realloc(buf, cap *= 2);
		ssize_t n = read(fd, buf + len, cap - len - 1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0 || len + (size_t)n >= ANCHOR_MAX_OUT - 1)
			break;
		len += (size_t)n;
	}
	buf[len] = 0;
	return buf;
}

/* Runs PY SCRIPT with the spec on stdin; the exit status (or -1 when it could not start, -2 on the timeout) and
 * what it printed (*outp, to free). */
static int run_script(const char *py, const char *script, const char *spec, int timeout_s, char **outp)
{
	int in[2], out[2];
	*outp = NULL;
	if (pipe(in))
		return -1;
	if (pipe(out)) {
		close(in[0]);
		close(in[1]);
		return -1;
	}
	fcntl(in[1], F_SETFD, FD_CLOEXEC);
	fcntl(out[0], F_SETFD, FD_CLOEXEC);
	struct sigaction ign = {.sa_handler = SIG_IGN}, old;
	sigaction(SIGPIPE, &ign, &old); /* a child that exits without reading must not kill us */
	pid_t pid = spawn(py, script, in, out);
	if (pid < 0) {
		close(in[1]);
		close(out[0]);
		sigaction(SIGPIPE, &old, NULL);
		return -1;
	}
	/* the spec is a few kB, under a pipe's buffer: this write does not wait for the reader */
	for (size_t done = 0, n = strlen(spec); done < n;) {
		ssize_t w = write(in[1], spec + done, n - done);
		if (w <= 0 && errno != EINTR)
			break;
		done += w > 0 ? (size_t)w : 0;
	}
	close(in[1]);
	int timed_out, st = 0;
	*outp = collect(out[0], pid, mono_s() + timeout_s, &timed_out);
	close(out[0]);
	/* stdout closed: the child has a little longer to exit, then its group is killed */
	double deadline = mono_s() + (timed_out ? 0 : 10);
	pid_t got;
	while ((got = waitpid(pid, &st, WNOHANG)) == 0 && mono_s() < deadline)
		usleep(20000);
	if (got == 0) {
		kill(-pid, SIGKILL);
		kill(pid, SIGKILL);
		waitpid(pid, &st, 0);
		timed_out = 1;
	}
	sigaction(SIGPIPE, &old, NULL);
	if (timed_out)
		return -2;
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + (WIFSIGNALED(st) ? WTERMSIG(st) : 0);
}

/* The best of moebench's expert modes on torch's shape (experts_<shape>_<mode>_TFLOPs, dense excluded): the
 * expert phase runs whichever mode it picks, so that is the figure the anchor is a target for. */
static double best_mode(json_t *cal, const char *tkey, char *mode, size_t mn)
{
	const char *end = strrchr(tkey, '_'), *mid = end;
	while (mid > tkey && mid[-1] != '_')
		mid--;
	if (strncmp(tkey, "experts_", 8) || strcmp(end, "_TFLOPs") || mid <= tkey)
		return 0;
	size_t plen = (size_t)(mid - tkey); /* "experts_<shape>_" */
	double best = 0;
	const char *k;
	json_t *v;
	json_object_foreach(cal, k, v) {
		const char *kend = strrchr(k, '_');
		if (!json_is_number(v) || strncmp(k, tkey, plen) || !kend || strcmp(kend, "_TFLOPs") || kend < k + plen)
			continue;
		size_t ml = (size_t)(kend - (k + plen));
		if (!ml || memchr(k + plen, '_', ml) || (ml == 5 && !strncmp(k + plen, "dense", 5)))
			continue;
		if (json_number_value(v) > best) {
			best = json_number_value(v);
			snprintf(mode, mn, "%.*s", (int)ml, k + plen);
		}
	}
	return best;
}

/* One "torch_KEY<TAB>TORCH<TAB>RATIO<TAB># ..." line per torch figure: RATIO is moebench / torch for the figure
 * of the same name ("-" where calibrate has none). */
void moe_torch_anchor_ratios(json_t *cal, FILE *out)
{
	json_t *fig = json_object_get(cal, "torch"), *env = json_object_get(cal, "torch_env");
	fprintf(out, "# torch anchors (torch %s, %s): torch_KEY, torch's figure, moebench / torch; for GB/s and "
		     "TFLOP/s above 1 means moebench is faster, for ms below 1\n",
		json_string_value(json_object_get(env, "torch")) ? json_string_value(json_object_get(env, "torch")) : "?",
		json_string_value(json_object_get(env, "device")) ? json_string_value(json_object_get(env, "device")) : "?");
	const char *k;
	json_t *v;
	json_object_foreach(fig, k, v) {
		if (!json_is_number(v))
			continue;
		double t = json_number_value(v), m = json_number_value(json_object_get(cal, k));
		fprintf(out, "torch_%s\t%.3f\t", k, t);
		if (json_is_number(json_object_get(cal, k)) && t > 0)
			fprintf(out, "%.2f\t# moebench %.3f", m / t, m);
		else
			fprintf(out, "-\t# no moebench figure of that name");
		char mode[64];
		double b = best_mode(cal, k, mode, sizeof(mode));
		if (b > 0 && t > 0)
			fprintf(out, "; moebench's best mode (%s) %.1f: %.2f", mode, b, b / t);
		/* what a run's expert phase picks by itself: the figure that must not fall behind torch's */
		const char *g = strstr(k, "_grouped_TFLOPs");
		if (g && t > 0 && !strncmp(k, "experts_", 8)) {
			char ak[256];
			snprintf(ak, sizeof(ak), "%.*s_auto_TFLOPs", (int)(g - k), k);
			json_t *a = json_object_get(cal, ak);
			if (json_is_number(a))
				fprintf(out, "; auto %.1f: %.2f", json_number_value(a), json_number_value(a) / t);
		}
		fputc('\n', out);
	}
	const char *ek;
	json_t *ev;
	json_object_foreach(json_object_get(env, "errors"), ek, ev)
		fprintf(out, "# torch anchor %s failed: %s\n", ek, json_string_value(ev) ? json_string_value(ev) : "?");
}

/* Runs the anchors and merges them into cal ("torch": the figures under calibrate's names, "torch_env": the
 * script's environment and errors, "torch_status"); says on out what happened. Never fails calibrate. */
void moe_torch_anchors(json_t *cal, FILE *out)
{
	const char *py = getenv("MOEBENCH_PYTHON");
	const char *tmo = getenv("MOEBENCH_TORCH_TIMEOUT");
	int timeout_s = tmo && atoi(tmo) > 0 ? atoi(tmo) : 900;
	char script[PATH_MAX + 64], why[512];
	if (!py || !*py)
		py = "python3";
	json_t *spec = moe_torch_anchor_spec();
	char *text = json_dumps(spec, JSON_COMPACT), *got = NULL;
	json_decref(spec);
	int rc = find_script(script, sizeof(script)) ? -3 : run_script(py, script, text, timeout_s, &got);
	free(text);
	json_error_t jerr;
	json_t *res = rc == 0 && got ? json_loads(got, JSON_DISABLE_EOF_CHECK, &jerr) : NULL;
	json_t *fig = json_object_get(res, "figures");
	if (rc == 77)
		snprintf(why, sizeof(why), "skipped (torch not importable)");
	else if (rc == 127)
		snprintf(why, sizeof(why), "skipped (%.200s cannot be run)", py);
	else if (rc == -3)
		snprintf(why, sizeof(why), "skipped (scripts/" ANCHOR_SCRIPT " not found)");
	else if (rc == -1)
		snprintf(why, sizeof(why), "failed (cannot start %.200s: %s)", py, strerror(errno));
	else if (rc == -2)
		snprintf(why, sizeof(why), "failed (no answer in %d s; MOEBENCH_TORCH_TIMEOUT sets it)", timeout_s);
	else if (rc)
		snprintf(why, sizeof(why), "failed (%.200s %.250s exited with status %d)", py, script, rc);
	else if (!json_is_object(fig))
		snprintf(why, sizeof(why), "failed (its output is not the JSON expected: %s)",
			 res ? "no \"figures\" object" : jerr.text);
	else
		why[0] = 0;
	free(got);
	if (why[0]) {
		fprintf(out, "# torch anchors: %s\n", why);
		/* figures of an earlier run would read as this run's */
		json_object_del(cal, "torch");
		json_object_del(cal, "torch_env");
		json_object_set_new(cal, "torch_status", json_string(why));
		json_decref(res);
		return;
	}
	json_object_set(cal, "torch", fig);
	json_t *env = json_object_get(res, "env");
	env = json_is_object(env) ? json_copy(env) : json_object();
	if (json_is_object(json_object_get(res, "errors")))
		json_object_set(env, "errors", json_object_get(res, "errors"));
	json_object_set_new(cal, "torch_env", env);
	json_object_set_new(cal, "torch_status", json_string("ok"));
	json_decref(res);
	moe_torch_anchor_ratios(cal, out);
}
