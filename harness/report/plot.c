/* Plots of a run's results and of the nightly trend: the TSVs say what to draw, gnuplot draws it. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "moe.h"
#include "outfile.h"
#include "plot.h"
#include "runinfo.h"

#ifndef MOE_SOURCE_DIR
#define MOE_SOURCE_DIR "."
#endif

/* a heat map per case is a page of its own: past a few they are more than anyone reads */
#define PLOT_MAX_RANK_MAPS 8
/* past this many curves the colours repeat twice and the CDF legend stops telling them apart */
#define PLOT_MAX_CDF_CASES 16
/* the scripts exit with this when their data holds nothing to draw */
#define PLOT_NO_DATA 3
#define PLOT_PATH_MAX 4096

static const char *const plot_formats[] = {"png", "svg"};

const char *moe_plot_scripts_dir(void)
{
	static char dir[PLOT_PATH_MAX];
	/* a "plots" folder alone is not enough: a run's output folder may be called that too */
	if (access("plots/latency.gp", R_OK) == 0)
		return "plots";
	snprintf(dir, sizeof(dir), "%s/plots", MOE_SOURCE_DIR);
	return dir;
}

__attribute__((format(printf, 3, 4))) static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
	if (!err || !errlen)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

static int mkdir_p(const char *path)
{
	char tmp[PLOT_PATH_MAX];
	if (snprintf(tmp, sizeof(tmp), "%s", path) >= (int)sizeof(tmp)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	for (char *s = tmp + 1; *s; s++)
		if (*s == '/') {
			*s = 0;
			if (mkdir(tmp, 0755) && errno != EEXIST)
				return -1;
			*s = '/';
		}
	return mkdir(tmp, 0755) && errno != EEXIST ? -1 : 0;
}

/* Columns of a TSV wanted by name: the '# ' header gives their places, fallback (0-based) where a
 * header is missing or lacks the name, so that a reordered file still reads right. */
struct tsv_want {
	const char *name;
	int fallback;
};

typedef int (*tsv_row_fn)(char **fields, void *ctx);

/* Call fn with the wanted fields of every data row (rows too short are skipped). Returns 0, or -1 with
 * errno set when the file cannot be read, or fn's nonzero return. */
static int tsv_scan(const char *path, const struct tsv_want *want, int nwant, tsv_row_fn fn, void *ctx)
{
	char why[PLOT_PATH_MAX + 128];
	FILE *f = moe_open_input(path, 0, why, sizeof(why)); /* a FIFO or device would block or never end */
	if (!f) {
		if (errno == EINVAL)
			moe_warn("%s", why);
		return -1;
	}
	int idx[16], maxidx = 0, rc = 0, first = 1;
	char *line = NULL, *fields[16], *all[256];
	size_t cap = 0;
	for (int i = 0; i < nwant && i < 16; i++)
		idx[i] = want[i].fallback;
	while (getline(&line, &cap, f) >= 0) {
		line[strcspn(line, "\r\n")] = 0;
		int n = 0;
		char *p = line;
		int header = first && !strncmp(line, "# ", 2);
		first = 0;
		if (header)
			p += 2;
		else if (line[0] == '#' || !line[0])
			continue;
		for (;;) {
			if (n < (int)MOE_ARRAY_SIZE(all))
				all[n++] = p;
			char *t = strchr(p, '\t');
			if (!t)
				break;
			*t = 0;
			p = t + 1;
		}
		if (header) {
			for (int i = 0; i < nwant && i < 16; i++)
				for (int k = 0; k < n; k++)
					if (!strcmp(all[k], want[i].name))
						idx[i] = k;
			continue;
		}
		maxidx = 0;
		for (int i = 0; i < nwant && i < 16; i++)
			maxidx = MOE_MAX(maxidx, idx[i]);
		if (maxidx >= n)
			continue;
		for (int i = 0; i < nwant && i < 16; i++)
			fields[i] = all[idx[i]];
		if ((rc = fn(fields, ctx)))
			break;
	}
	free(line);
	fclose(f);
	return rc;
}

struct plot_case {
	char *name;
	int has_samples; /* some 'total' sample above zero: a CDF curve */
	int has_ranks;   /* some per-rank p50 above zero: a heat map */
};

struct plot_cases {
	struct plot_case *v;
	int n, cap;
	int last;           /* rows come grouped by case: start the next look-up where the last ended */
	int latency_points; /* cases with tokens and a total time: points on the log-log latency plot */
	int any_phase;      /* rows of a trend file with a time above zero, any phase */
};

static struct plot_case *find_case(struct plot_cases *c, const char *name)
{
	for (int k = 0; k < c->n; k++) {
		int i = (c->last + k) % c->n;
		if (!strcmp(c->v[i].name, name)) {
			c->last = i;
			return &c->v[i];
		}
	}
	return NULL;
}

static int on_case_row(char **f, void *ctx)
{
	struct plot_cases *c = ctx;
	if (c->n == c->cap) {
		c->cap = c->cap ? 2 * c->cap : 16;
		c->v = realloc(c->v, (size_t)c->cap * sizeof(*c->v));
		if (!c->v)
			abort();
	}
	c->v[c->n++] = (struct plot_case){.name = moe_xstrdup(f[0])};
	c->latency_points += atof(f[1]) > 0 && atof(f[2]) > 0;
	return 0;
}

static int on_sample_row(char **f, void *ctx)
{
	struct plot_case *pc;
	if (!strcmp(f[1], "total") && atof(f[2]) > 0 && (pc = find_case(ctx, f[0])))
		pc->has_samples = 1;
	return 0;
}

static int on_rank_row(char **f, void *ctx)
{
	struct plot_case *pc;
	if (atof(f[2]) > 0 && (pc = find_case(ctx, f[0])))
		pc->has_ranks = 1;
	return 0;
}

static int on_trend_row(char **f, void *ctx)
{
	struct plot_cases *c = ctx;
	c->any_phase |= atof(f[1]) > 0; /* any phase: trend.gp draws a panel per phase present */
	return 0;
}

static void cases_free(struct plot_cases *c)
{
	for (int i = 0; i < c->n; i++)
		free(c->v[i].name);
	free(c->v);
	memset(c, 0, sizeof(*c));
}

/* Run `gnuplot -c DIR/SCRIPT ARG...` with an argument vector: no shell sees a case name or path.
 * Returns 0 drawn, 1 when the script found nothing to draw, -1 failed with gnuplot's last line in err,
 * -2 when gnuplot itself could not be started. */
static int run_gnuplot(const char *plots_dir, const char *script, const char *const *args, int nargs, char *err,
		       size_t errlen)
{
	char path[PLOT_PATH_MAX];
	const char *argv[12];
	int n = 0, fd[2];
	snprintf(path, sizeof(path), "%s/%s", plots_dir, script);
	argv[n++] = "gnuplot";
	argv[n++] = "-c";
	argv[n++] = path;
	for (int i = 0; i < nargs && n < (int)MOE_ARRAY_SIZE(argv) - 1; i++)
		argv[n++] = args[i];
	argv[n] = NULL;
	if (pipe2(fd, O_CLOEXEC)) {
		set_err(err, errlen, "pipe: %s", strerror(errno));
		return -1;
	}
	fflush(stdout);
	fflush(stderr);
	pid_t pid = fork();
	if (pid < 0) {
		set_err(err, errlen, "fork: %s", strerror(errno));
		close(fd[0]);
		close(fd[1]);
		return -1;
	}
	if (pid == 0) {
		/* gnuplot's chatter goes to the parent, which keeps the end of it for the error message:
		 * library code leaves stdout alone */
		int nul = open("/dev/null", O_RDONLY);
		if (nul >= 0)
			dup2(nul, STDIN_FILENO);
		dup2(fd[1], STDOUT_FILENO);
		dup2(fd[1], STDERR_FILENO);
		execvp("gnuplot", (char *const *)argv);
		dprintf(STDERR_FILENO, "cannot run gnuplot: %s (install gnuplot, e.g. gnuplot-nox)\n", strerror(errno));
		_exit(127);
	}
	close(fd[1]);
	char tail[2048];
	size_t len = 0;
	for (;;) {
		char buf[1024];
		ssize_t k = read(fd[0], buf, sizeof(buf));
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			break;
		/* keep the last bytes (buf is smaller than tail): gnuplot says what went wrong at the end */
		if (len + (size_t)k >= sizeof(tail)) {
			size_t drop = len + (size_t)k - (sizeof(tail) - 1);
			if (drop > len)
				drop = len;
			memmove(tail, tail + drop, len - drop);
			len -= drop;
		}
		memcpy(tail + len, buf, (size_t)k);
		len += (size_t)k;
	}
	close(fd[0]);
	tail[len] = 0;
	int status;
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR) {
			set_err(err, errlen, "waitpid: %s", strerror(errno));
			return -1;
		}
	/* the last non-empty line names the script line and the reason */
	while (len && (tail[len - 1] == '\n' || tail[len - 1] == ' '))
		tail[--len] = 0;
	char *last = strrchr(tail, '\n');
	last = last ? last + 1 : tail;
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
		if (len)
			moe_debug("gnuplot %s: %s", script, last);
		return 0;
	}
	if (WIFEXITED(status) && WEXITSTATUS(status) == PLOT_NO_DATA) {
		moe_info("plot %s: %s", script, last);
		return 1;
	}
	if (WIFEXITED(status) && WEXITSTATUS(status) == 127) {
		set_err(err, errlen, "%s", len ? last : "cannot run gnuplot");
		return -2;
	}
	if (WIFSIGNALED(status))
		set_err(err, errlen, "gnuplot %s killed by signal %d", path, WTERMSIG(status));
	else
		set_err(err, errlen, "gnuplot %s exited %d: %s", path, WEXITSTATUS(status), len ? last : "(no message)");
	return -1;
}

/* Failures are counted and the first one kept for the caller: one broken plot should not hide the
 * others, but without gnuplot there is no point in trying the rest. */
struct plot_tally {
	int drawn, failed, no_gnuplot;
	char first[1024];
};

/* One plot in one format: gnuplot writes a temp file beside out, which replaces out only when gnuplot exited
 * cleanly and left a non-empty file (gnuplot opens its output before it fails: a half-written file would pass
 * for a plot). Returns run_gnuplot's code, or -1 with why set when the file could not be installed. */
static int draw_one(const char *plots_dir, const char *script, const char *out, const char **args, int nargs,
		    char *why, size_t whylen)
{
	char tmp[PLOT_PATH_MAX + 64];
	int fd = -1;
	if (moe_out_temp_name(out, tmp, sizeof(tmp)) || (fd = mkostemp(tmp, O_CLOEXEC)) < 0) {
		set_err(why, whylen, "%s: %s", out, strerror(errno));
		return -1;
	}
	close(fd);
	args[1] = tmp; /* absolute or "./...": gnuplot cannot read it as "|command" */
	int r = run_gnuplot(plots_dir, script, args, nargs, why, whylen);
	if (r)
		unlink(tmp);
	else if (moe_out_install(tmp, out, why, whylen))
		r = -1;
	return r;
}

/* Draw one plot in every format: out_dir/STEM.png, .svg. args[1] and args[2] are filled in here. */
static void draw(struct plot_tally *t, const char *plots_dir, const char *script, const char *out_dir,
		 const char *stem, const char **args, int nargs)
{
	for (size_t i = 0; i < MOE_ARRAY_SIZE(plot_formats) && !t->no_gnuplot; i++) {
		char out[PLOT_PATH_MAX], why[1024];
		snprintf(out, sizeof(out), "%s/%s.%s", out_dir, stem, plot_formats[i]);
		args[2] = plot_formats[i];
		int r = draw_one(plots_dir, script, out, args, nargs, why, sizeof(why));
		if (r < 0) {
			if (!t->failed++)
				snprintf(t->first, sizeof(t->first), "plot %.200s.%s failed: %.700s", stem, plot_formats[i], why);
			else
				moe_warn("plot %s.%s failed too: %s", stem, plot_formats[i], why);
			t->no_gnuplot = r == -2;
		}
		t->drawn += r == 0;
		if (r > 0)
			break; /* no data is no data in either format */
	}
}

/* File names keep letters, digits, '.', '-' and '_': a case name's '/' and '=' become '_'. */
static void sanitise(const char *name, char *out, size_t n)
{
	size_t k = 0;
	for (; *name && k + 1 < n; name++)
		out[k++] = (*name >= 'a' && *name <= 'z') || (*name >= 'A' && *name <= 'Z') ||
				   (*name >= '0' && *name <= '9') || *name == '.' || *name == '-' || *name == '_'
			   ? *name
			   : '_';
	out[k] = 0;
}

/* A path with a control character is refused: gnuplot would get it as a file name it may misread, and a
 * newline in it could end a command. */
static int refuse_path(const char *path, char *err, size_t errlen)
{
	char buf[PLOT_PATH_MAX];
	if (!moe_safe_path_arg(path, buf, sizeof(buf)))
		return 0;
	char shown[256];
	moe_tsv_escape(path, shown, sizeof(shown));
	set_err(err, errlen, "path '%s': %s", shown,
		errno == EINVAL ? "holds a control character; refused" : strerror(errno));
	return -1;
}

static int check_setup(const char *plots_dir, const char *script, const char *out_dir, char *err, size_t errlen)
{
	char path[PLOT_PATH_MAX];
	snprintf(path, sizeof(path), "%s/%s", plots_dir, script);
	if (access(path, R_OK)) {
		set_err(err, errlen, "gnuplot script %s: %s", path, strerror(errno));
		return -1;
	}
	if (mkdir_p(out_dir)) {
		set_err(err, errlen, "cannot create plot folder %s: %s", out_dir, strerror(errno));
		return -1;
	}
	return 0;
}

static int finish(const struct plot_tally *t, char *err, size_t errlen)
{
	if (!t->failed)
		return 0;
	if (t->failed == 1)
		set_err(err, errlen, "%s", t->first);
	else
		set_err(err, errlen, "%d plots failed; the first: %s", t->failed, t->first);
	return -1;
}

/* A run's TSVs as gnuplot reads them, and the subtitle every plot of the run carries. */
struct run_tsvs {
	char cases[PLOT_PATH_MAX], samples[PLOT_PATH_MAX], ranks[PLOT_PATH_MAX], subtitle[512];
};

/* The run's TSVs as plot_cases; cases.tsv must be there, samples.tsv and ranks.tsv may be missing from an
 * older run (their plots are skipped, the rest drawn). */
static int scan_run(const struct run_tsvs *r, struct plot_cases *c, char *err, size_t errlen)
{
	static const struct tsv_want case_cols[] = {{"case", 0}, {"tokens_total", 8}, {"total_p50_us", 25}};
	static const struct tsv_want sample_cols[] = {{"case", 0}, {"phase", 2}, {"us", 3}};
	static const struct tsv_want rank_cols[] = {{"case", 0}, {"phase", 2}, {"p50_us", 3}};
	if (tsv_scan(r->cases, case_cols, 3, on_case_row, c)) {
		set_err(err, errlen, "%s: %s (not a moebench run folder?)", r->cases, strerror(errno));
		return -1;
	}
	if (tsv_scan(r->samples, sample_cols, 3, on_sample_row, c))
		moe_info("plot: %s: %s; no CDF", r->samples, strerror(errno));
	if (tsv_scan(r->ranks, rank_cols, 3, on_rank_row, c))
		moe_info("plot: %s: %s; no per-rank maps", r->ranks, strerror(errno));
	return 0;
}

/* The latency lines, the phases' bars and the in-run comparison (axes.tsv says which cases differ in
 * tokens alone: the latency lines). */
static void draw_overview(struct plot_tally *t, const struct run_tsvs *r, const struct plot_cases *c,
			  const char *run_dir, const char *plots_dir, const char *out_dir)
{
	char axes_tsv[PLOT_PATH_MAX], safe_dir[PLOT_PATH_MAX - 32];
	moe_safe_path_arg(run_dir, safe_dir, sizeof(safe_dir)); /* never a name gnuplot could run */
	snprintf(axes_tsv, sizeof(axes_tsv), "%s/axes.tsv", safe_dir);
	const char *args[5] = {r->cases, NULL, NULL, r->subtitle, axes_tsv};
	if (c->latency_points)
		draw(t, plots_dir, "latency.gp", out_dir, "latency", args, 5);
	else
		moe_info("plot: no case with tokens and a total time: no latency plot");
	if (c->n)
		draw(t, plots_dir, "phases.gp", out_dir, "phases", args, 4);
	if (!access(axes_tsv, R_OK)) {
		const char *aargs[4] = {axes_tsv, NULL, NULL, r->subtitle};
		draw(t, plots_dir, "axes.gp", out_dir, "axes", aargs, 4);
	}
}

/* The CDF of the first PLOT_MAX_CDF_CASES sampled cases; its subtitle says when others were left off. */
static void draw_cdf(struct plot_tally *t, const struct run_tsvs *r, const struct plot_cases *c,
		     const char *plots_dir, const char *out_dir)
{
	/* the CDF's cases as one word list for gnuplot's word(): quoted, so a name may hold spaces */
	size_t cap = 1, len = 0;
	int ncdf = 0;
	for (int i = 0; i < c->n; i++)
		cap += strlen(c->v[i].name) + 3;
	char *list = moe_xmalloc(cap);
	list[0] = 0;
	for (int i = 0; i < c->n && ncdf < PLOT_MAX_CDF_CASES; i++) {
		if (!c->v[i].has_samples)
			continue;
		if (strchr(c->v[i].name, '"')) {
			moe_warn("plot: case %s: a '\"' in its name keeps it off the CDF", c->v[i].name);
			continue;
		}
		len += (size_t)snprintf(list + len, cap - len, "%s\"%s\"", len ? " " : "", c->v[i].name);
		ncdf++;
	}
	int nsampled = 0;
	for (int i = 0; i < c->n; i++)
		nsampled += c->v[i].has_samples;
	char cdf_sub[700];
	snprintf(cdf_sub, sizeof(cdf_sub), "%s%s", r->subtitle, ncdf < nsampled ? "\n" : "");
	if (ncdf < nsampled) /* said on the plot itself: a reader of a pasted PNG never sees stderr */
		snprintf(cdf_sub + strlen(cdf_sub), sizeof(cdf_sub) - strlen(cdf_sub),
			 "only %d of %d cases drawn (the first in run order; cases.tsv has all)", ncdf, nsampled);
	if (ncdf) {
		const char *cargs[5] = {r->samples, NULL, NULL, list, cdf_sub};
		draw(t, plots_dir, "cdf.gp", out_dir, "cdf", cargs, 5);
	}
	free(list);
}

/* A per-rank heat map for each of the first PLOT_MAX_RANK_MAPS cases with per-rank times. */
static void draw_rank_maps(struct plot_tally *t, const struct run_tsvs *r, const struct plot_cases *c,
			   const char *plots_dir, const char *out_dir)
{
	int nmaps = 0, nranked = 0;
	for (int i = 0; i < c->n; i++)
		nranked += c->v[i].has_ranks;
	char map_sub[700];
	snprintf(map_sub, sizeof(map_sub), "%s", r->subtitle);
	if (nranked > PLOT_MAX_RANK_MAPS) /* on every map drawn: a pasted one must say that others exist */
		snprintf(map_sub + strlen(map_sub), sizeof(map_sub) - strlen(map_sub),
			 "\nmaps for the first %d of %d cases only; ranks.tsv has all", PLOT_MAX_RANK_MAPS, nranked);
	for (int i = 0; i < c->n; i++) {
		if (!c->v[i].has_ranks)
			continue;
		if (nmaps == PLOT_MAX_RANK_MAPS) {
			moe_warn("plot: per-rank maps for the first %d cases only (ranks.tsv has all of them)", PLOT_MAX_RANK_MAPS);
			break;
		}
		char stem[256] = "ranks-";
		sanitise(c->v[i].name, stem + 6, sizeof(stem) - 6);
		const char *rargs[5] = {r->ranks, NULL, NULL, c->v[i].name, map_sub};
		draw(t, plots_dir, "ranks.gp", out_dir, stem, rargs, 5);
		nmaps++;
	}
}

int moe_plot_run(const char *run_dir, const char *out_dir, const char *plots_dir, char *err, size_t errlen)
{
	struct run_tsvs r;
	struct plot_cases c = {0};
	struct plot_tally t = {0};
	if (!plots_dir)
		plots_dir = moe_plot_scripts_dir();
	if (refuse_path(run_dir, err, errlen) || refuse_path(out_dir, err, errlen))
		return MOE_PLOT_REFUSED;
	if (check_setup(plots_dir, "latency.gp", out_dir, err, errlen))
		return -1;
	/* absolute or "./...": gnuplot reads a data file named "<cmd" through a shell */
	char safe_dir[PLOT_PATH_MAX - 32];
	moe_safe_path_arg(run_dir, safe_dir, sizeof(safe_dir));
	snprintf(r.cases, sizeof(r.cases), "%s/cases.tsv", safe_dir);
	snprintf(r.samples, sizeof(r.samples), "%s/samples.tsv", safe_dir);
	snprintf(r.ranks, sizeof(r.ranks), "%s/ranks.tsv", safe_dir);
	int rc = -1;
	if (!scan_run(&r, &c, err, errlen)) {
		moe_run_subtitle(run_dir, r.subtitle, sizeof(r.subtitle));
		draw_overview(&t, &r, &c, run_dir, plots_dir, out_dir);
		draw_cdf(&t, &r, &c, plots_dir, out_dir);
		draw_rank_maps(&t, &r, &c, plots_dir, out_dir);
		rc = finish(&t, err, errlen);
	}
	cases_free(&c);
	return rc;
}

int moe_plot_trend(const char *trend_tsv, const char *out_dir, const char *plots_dir, char *err, size_t errlen)
{
	static const struct tsv_want trend_cols[] = {{"phase", 3}, {"p50_us", 4}};
	struct plot_cases c = {0};
	struct plot_tally t = {0};
	char safe_tsv[PLOT_PATH_MAX];
	if (!plots_dir)
		plots_dir = moe_plot_scripts_dir();
	if (refuse_path(trend_tsv, err, errlen) || refuse_path(out_dir, err, errlen) ||
	    moe_safe_path_arg(trend_tsv, safe_tsv, sizeof(safe_tsv)))
		return MOE_PLOT_REFUSED;
	if (check_setup(plots_dir, "trend.gp", out_dir, err, errlen))
		return -1;
	if (tsv_scan(trend_tsv, trend_cols, 2, on_trend_row, &c)) {
		set_err(err, errlen, "%s: %s", trend_tsv, strerror(errno));
		return -1;
	}
	if (!c.any_phase) {
		moe_info("plot: %s has no timed rows: no trend plot", trend_tsv);
		return 0;
	}
	const char *args[3] = {safe_tsv, NULL, NULL};
	draw(&t, plots_dir, "trend.gp", out_dir, "trend", args, 3);
	return finish(&t, err, errlen);
}
