/* Scenario parsing (libinih) and expansion of sweeps into cases; every error names file, line and key. */
#include "scenario.h"

#include <ctype.h>
#include <errno.h>
#include <ini.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "moe.h"
#include "outfile.h"
#include "workload.h"

/* a scenario is hand-written text: 256 MiB is far past any real one and bounds what a wrong file costs */
#define MOE_SCENARIO_MAX_BYTES (256LL << 20)

struct entry {
	char section[MOE_NAME_MAX];
	char key[64];
	char *value;
	int line; /* 0 for --set */
};

struct sections {
	char name[MOE_NAME_MAX];
	int line;
	int first, count; /* its entries: consecutive, since a section may not appear twice */
};

struct parse_state {
	const char *path;
	int lineno;
	struct entry *e;
	int n, cap;
	struct sections *sec;
	int nsec, capsec;
	int *slot; /* open-addressing hash of section names -> index in sec (-1 free): a file of 100k sections
		    * must not cost 100k^2/2 name comparisons */
	int nslot;
	char err[1024];
	int failed;
};

static unsigned name_hash(const char *s)
{
	unsigned h = 2166136261u; /* FNV-1a */
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 16777619u;
	return h;
}

/* The slot of name in the hash: its section's, or the free one where it would go */
static int *section_slot(struct parse_state *ps, const char *name)
{
	unsigned mask = (unsigned)ps->nslot - 1, i = name_hash(name) & mask;
	while (ps->slot[i] >= 0 && strcmp(ps->sec[ps->slot[i]].name, name))
		i = (i + 1) & mask;
	return &ps->slot[i];
}

static void grow_slots(struct parse_state *ps)
{
	free(ps->slot);
	ps->nslot = ps->nslot ? 2 * ps->nslot : 64;
	ps->slot = moe_xmalloc((size_t)ps->nslot * sizeof(int));
	for (int i = 0; i < ps->nslot; i++)
		ps->slot[i] = -1;
	for (int k = 0; k < ps->nsec; k++)
		*section_slot(ps, ps->sec[k].name) = k;
}

static int find_section(struct parse_state *ps, const char *name)
{
	if (ps->nsec && !strcmp(ps->sec[ps->nsec - 1].name, name))
		return ps->nsec - 1; /* keys come right after their header */
	return ps->nslot ? *section_slot(ps, name) : -1;
}

static void add_section(struct parse_state *ps, const char *name)
{
	if (2 * (ps->nsec + 1) > ps->nslot)
		grow_slots(ps);
	int *slot = section_slot(ps, name);
	if (*slot >= 0) {
		if (!ps->failed)
			snprintf(ps->err, sizeof(ps->err), "%s:%d: section [%s] appears twice (first on line %d)", ps->path,
				 ps->lineno, name, ps->sec[*slot].line);
		ps->failed = 1;
		return;
	}
	if (ps->nsec == ps->capsec) {
		ps->capsec = ps->capsec ? 2 * ps->capsec : 16;
		ps->sec = realloc(ps->sec, (size_t)ps->capsec * sizeof(*ps->sec));
		if (!ps->sec)
			abort();
	}
	struct sections *sc = &ps->sec[ps->nsec];
	snprintf(sc->name, MOE_NAME_MAX, "%s", name);
	sc->line = ps->lineno;
	sc->first = sc->count = 0;
	*slot = ps->nsec++;
}

/* inih keeps at most this many bytes of a section name, untrimmed (MAX_SECTION in its ini.c, NUL included):
 * a longer name would reach the handler cut short and its keys would match no case. */
#define INIH_MAX_SECTION 50

/* Line reader for inih that counts lines and sees section headers (so empty and repeated sections,
 * which inih does not report, are found, and each case knows its header line). inih hands it a buffer
 * of num bytes and would take a longer line as several, so such a line is an error here: a line may
 * have num - 1 characters besides its line end ("\n", "\r\n" or the end of the file). */
static char *reader(char *str, int num, void *stream)
{
	struct parse_state *ps = ((void **)stream)[1];
	FILE *f = ((void **)stream)[0];
	int len = 0, c = 0;
	while (len < num - 1 && (c = getc(f)) != EOF) {
		if (!c) { /* inih would see the line end there and drop the rest of the line without a word */
			if (!ps->failed)
				snprintf(ps->err, sizeof(ps->err), "%s:%d: a NUL byte (binary data?)", ps->path, ps->lineno + 1);
			ps->failed = 1;
			return NULL;
		}
		str[len++] = (char)c;
		if (c == '\n')
			break;
	}
	if (!len)
		return NULL;
	str[len] = 0;
	ps->lineno++;
	if (len == num - 1 && c != '\n') { /* the buffer is full: only the line end may come next */
		c = getc(f);
		if (c == '\r')
			c = getc(f);
		if (c != '\n' && c != EOF) {
			if (!ps->failed)
				snprintf(ps->err, sizeof(ps->err), "%s:%d: line is longer than %d characters (the limit of the INI reader)",
					 ps->path, ps->lineno, num - 1);
			ps->failed = 1;
			return NULL;
		}
	}
	const char *s = str;
	/* see the line as inih does: a UTF-8 BOM on line 1 and any isspace() before '[' are skipped */
	if (ps->lineno == 1 && !strncmp(s, "\xEF\xBB\xBF", 3))
		s += 3;
	while (isspace((unsigned char)*s))
		s++;
	if (*s == '[') {
		const char *e = strchr(s, ']');
		if (e && (size_t)(e - s - 1) < INIH_MAX_SECTION) {
			char name[MOE_NAME_MAX];
			const char *a = s + 1;
			while (*a == ' ' || *a == '\t')
				a++;
			size_t n = (size_t)(e - a);
			while (n && (a[n - 1] == ' ' || a[n - 1] == '\t'))
				n--;
			memcpy(name, a, n);
			name[n] = 0;
			if (!n) {
				if (!ps->failed)
					snprintf(ps->err, sizeof(ps->err), "%s:%d: empty section name", ps->path, ps->lineno);
				ps->failed = 1;
			} else
				add_section(ps, name);
		} else if (e) {
			if (!ps->failed)
				snprintf(ps->err, sizeof(ps->err), "%s:%d: section name longer than %d characters", ps->path,
					 ps->lineno, INIH_MAX_SECTION - 1);
			ps->failed = 1;
		}
	}
	return str;
}

static int add_entry(struct parse_state *ps, const char *section, const char *key, const char *value, int line)
{
	if (ps->n == ps->cap) {
		ps->cap = ps->cap ? 2 * ps->cap : 64;
		ps->e = realloc(ps->e, (size_t)ps->cap * sizeof(*ps->e));
		if (!ps->e)
			abort();
	}
	struct entry *e = &ps->e[ps->n++];
	snprintf(e->section, sizeof(e->section), "%s", section);
	snprintf(e->key, sizeof(e->key), "%s", key);
	e->value = moe_xstrdup(value);
	e->line = line;
	return 0;
}

static int handler(void *user, const char *section, const char *name, const char *value)
{
	struct parse_state *ps = user;
	if (ps->failed)
		return 0;
	if (!section[0]) {
		snprintf(ps->err, sizeof(ps->err), "%s:%d: key '%s' is outside any section; put it under [global] or a case",
			 ps->path, ps->lineno, name);
		ps->failed = 1;
		return 0;
	}
	if (!name) /* a section header alone (INI_CALL_HANDLER_ON_NEW_SECTION builds) */
		return 1;
	/* inih passes "[ a ]" as " a "; the reader recorded it trimmed, as "a" */
	char sec[MOE_NAME_MAX];
	while (*section == ' ' || *section == '\t')
		section++;
	size_t sl = strlen(section);
	while (sl && (section[sl - 1] == ' ' || section[sl - 1] == '\t'))
		sl--;
	snprintf(sec, sizeof(sec), "%.*s", (int)sl, section);
	section = sec;
	int si = find_section(ps, section);
	if (si < 0) { /* never expected: a key whose section no case would see must not be dropped silently */
		snprintf(ps->err, sizeof(ps->err), "%s:%d: key '%s': section [%s] not recognised", ps->path, ps->lineno,
			 name, section);
		ps->failed = 1;
		return 0;
	}
	if (!moe_opt_find(name)) {
		snprintf(ps->err, sizeof(ps->err), "%s:%d: key '%s': unknown key (moebench help keys lists them)", ps->path,
			 ps->lineno, name);
		ps->failed = 1;
		return 0;
	}
	struct sections *sc = &ps->sec[si];
	for (int i = sc->first; i < sc->first + sc->count; i++)
		if (!strcmp(ps->e[i].key, name)) {
			snprintf(ps->err, sizeof(ps->err), "%s:%d: key '%s': set twice in [%s] (first on line %d)", ps->path,
				 ps->lineno, name, section, ps->e[i].line);
			ps->failed = 1;
			return 0;
		}
	if (!value[0]) {
		snprintf(ps->err, sizeof(ps->err), "%s:%d: key '%s': empty value", ps->path, ps->lineno, name);
		ps->failed = 1;
		return 0;
	}
	if (!sc->count)
		sc->first = ps->n;
	else if (sc->first + sc->count != ps->n) { /* never expected: the ranges below rely on it */
		snprintf(ps->err, sizeof(ps->err), "%s:%d: key '%s': [%s] continues after another section", ps->path,
			 ps->lineno, name, section);
		ps->failed = 1;
		return 0;
	}
	sc->count++;
	return add_entry(ps, section, name, value, ps->lineno) == 0;
}

/* The values of one key, split on '|'. Returns 0 if any element is empty ("1||2", "1|"): a typo
 * there must not silently drop or collapse a sweep. */
static int split_sweep(const char *v, char ***out)
{
	int n = 1;
	for (const char *s = v; *s; s++)
		n += *s == '|';
	char **parts = moe_xcalloc((size_t)n, sizeof(char *));
	const char *s = v;
	int i = 0, empty = 0;
	for (;;) {
		const char *bar = strchr(s, '|');
		size_t len = bar ? (size_t)(bar - s) : strlen(s);
		while (len && (*s == ' ' || *s == '\t'))
			s++, len--;
		while (len && (s[len - 1] == ' ' || s[len - 1] == '\t'))
			len--;
		empty |= len == 0;
		parts[i] = moe_xcalloc(len + 1, 1);
		memcpy(parts[i++], s, len);
		if (!bar)
			break;
		s = bar + 1;
	}
	*out = parts;
	if (empty) {
		for (int j = 0; j < i; j++)
			free(parts[j]);
		free(parts);
		*out = NULL;
		return 0;
	}
	return i;
}

static void push_case(struct moe_caselist *l, const struct moe_case *c)
{
	if (l->n == l->cap) {
		l->cap = l->cap ? 2 * l->cap : 16;
		l->v = realloc(l->v, (size_t)l->cap * sizeof(*l->v));
		if (!l->v)
			abort();
	}
	l->v[l->n++] = *c;
}

static void where(char *buf, size_t len, const char *path, const struct entry *e)
{
	if (e->line)
		snprintf(buf, len, "%s:%d", path, e->line);
	else
		snprintf(buf, len, "--set %s", e->key);
}

/* A trace must be a regular file of bounded size: said here, at load time, rather than by every rank */
static int trace_unreadable(const char *path, char *err, size_t errlen)
{
	char why[400];
	FILE *f = moe_open_input(path, MOE_TRACE_MAX_BYTES, why, sizeof(why));
	if (!f) {
		snprintf(err, errlen, "trace file %s", why);
		return -1;
	}
	fclose(f);
	return 0;
}

/* A relative trace path resolves against the scenario's folder and must stay inside it (an absolute path
 * is the user's explicit choice). Returns 0 when fine, else -1 with the reason. */
static int trace_outside(const struct moe_params *p, char *err, size_t errlen)
{
	const char *t = p->routing.trace;
	if (t[0] == '/')
		return trace_unreadable(t, err, errlen);
	/* Lexical check first, so a path climbing out is named as such whether or not its target exists. */
	int depth = 0;
	for (const char *c = t; *c;) {
		size_t len = strcspn(c, "/");
		if (len == 2 && c[0] == '.' && c[1] == '.')
			depth--;
		else if (len && !(len == 1 && c[0] == '.'))
			depth++;
		if (depth < 0)
			break;
		c += len;
		c += strspn(c, "/");
	}
	char joined[2 * MOE_PATH_MAX + 2], real[PATH_MAX];
	size_t n = strlen(p->base_dir);
	if (depth < 0 && n > 1)
		goto outside;
	snprintf(joined, sizeof(joined), "%s/%s", p->base_dir, t);
	if (!realpath(joined, real)) {
		snprintf(err, errlen, "trace file '%.200s' (in %.200s): %s", t, p->base_dir, strerror(errno));
		return -1;
	}
	if (trace_unreadable(real, err, errlen))
		return -1;
	if (n > 1 && (strncmp(real, p->base_dir, n) || (real[n] != '/' && real[n] != 0))) { /* "/" holds everything */
	outside:
		snprintf(err, errlen, "trace file '%.200s' resolves outside the scenario's folder %.200s; give an absolute path to mean it",
			 t, p->base_dir);
		return -1;
	}
	return 0;
}

/* Expand one section: the merged entries (global, then section, then --set), each possibly swept. */
static int expand(const char *path, const char *base_dir, const struct sections *sec, struct entry **m, int nm,
		  struct moe_caselist *out, char *err, size_t errlen)
{
	char ***vals = moe_xcalloc((size_t)nm + 1, sizeof(char **));
	int *nv = moe_xcalloc((size_t)nm + 1, sizeof(int)), *pick = moe_xcalloc((size_t)nm + 1, sizeof(int));
	int rc = -1;
	long long combos = 1;
	for (int i = 0; i < nm; i++) {
		nv[i] = split_sweep(m[i]->value, &vals[i]);
		if (nv[i] == 0) {
			char w[MOE_PATH_MAX + 32];
			where(w, sizeof(w), path, m[i]);
			snprintf(err, errlen, "%s: key '%s': empty element in sweep '%s'", w, m[i]->key, m[i]->value);
			goto out;
		}
		combos *= nv[i];
		if (out->n + combos > 100000) { /* per file: a cap per section would not bound a file of many sections */
			snprintf(err, errlen, "%s:%d: section [%s] expands to more than 100000 cases%s", path, sec->line, sec->name,
				 out->n ? " (with the sections before it)" : "");
			goto out;
		}
	}
	for (;;) {
		struct moe_case c;
		memset(&c, 0, sizeof(c));
		moe_params_defaults(&c.p);
		snprintf(c.p.base_dir, sizeof(c.p.base_dir), "%s", base_dir);
		snprintf(c.file, sizeof(c.file), "%s", path);
		c.line = sec->line;
		size_t nl = (size_t)snprintf(c.name, sizeof(c.name), "%s", sec->name);
		/* model first, so explicit shape keys override its preset wherever they appear */
		for (int pass = 0; pass < 2; pass++)
			for (int i = 0; i < nm; i++) {
				int is_model = !strcmp(m[i]->key, "model");
				if (is_model != (pass == 0))
					continue;
				char e2[512], w[MOE_PATH_MAX + 32];
				if (moe_param_set(&c.p, m[i]->key, vals[i][pick[i]], e2, sizeof(e2))) {
					where(w, sizeof(w), path, m[i]);
					snprintf(err, errlen, "%s: key '%s': %s", w, m[i]->key, e2);
					goto out;
				}
			}
		for (int i = 0; i < nm; i++)
			if (nv[i] > 1 && nl < sizeof(c.name))
				nl += (size_t)snprintf(c.name + nl, sizeof(c.name) - nl, "/%s=%s", m[i]->key, vals[i][pick[i]]);
		if (nl >= sizeof(c.name)) {
			snprintf(err, errlen, "%s:%d: case name of [%s] with its sweep suffix is longer than %d characters", path,
				 sec->line, sec->name, MOE_NAME_MAX - 1);
			goto out;
		}
		char key[64], e2[512];
		if (c.p.routing.kind == MOE_ROUTE_TRACE && trace_outside(&c.p, e2, sizeof(e2))) {
			char w[MOE_PATH_MAX + 32];
			snprintf(w, sizeof(w), "%s:%d", path, sec->line);
			for (int i = 0; i < nm; i++)
				if (!strcmp(m[i]->key, "routing"))
					where(w, sizeof(w), path, m[i]);
			snprintf(err, errlen, "%s: key 'routing': %s (case %s)", w, e2, c.name);
			goto out;
		}
		if (moe_params_validate(&c.p, key, sizeof(key), e2, sizeof(e2))) {
			char w[MOE_PATH_MAX + 32];
			snprintf(w, sizeof(w), "%s:%d", path, sec->line);
			for (int i = 0; i < nm; i++)
				if (!strcmp(m[i]->key, key))
					where(w, sizeof(w), path, m[i]);
			snprintf(err, errlen, "%s: key '%s': %s (case %s)", w, key, e2, c.name);
			goto out;
		}
		push_case(out, &c);
		int i = 0;
		while (i < nm && ++pick[i] == nv[i])
			pick[i++] = 0;
		if (i == nm)
			break;
	}
	rc = 0;
out:
	for (int i = 0; i < nm; i++) {
		for (int j = 0; j < nv[i]; j++)
			free(vals[i][j]);
		free(vals[i]);
	}
	free(vals);
	free(nv);
	free(pick);
	return rc;
}

/* Case names are how a run's results are looked up: the same name twice in one run (two files, or a
 * section named like another's sweep case) is an error naming both places. Sorted, so O(n log n). */
static int cmp_case_at(const void *a, const void *b)
{
	const struct moe_case *x = *(const struct moe_case *const *)a, *y = *(const struct moe_case *const *)b;
	int d = strcmp(x->name, y->name);
	return d ? d : (x > y) - (x < y); /* ties in list order, so the first place is named first */
}

static int check_unique_names(const struct moe_caselist *l, char *err, size_t errlen)
{
	const struct moe_case **v = moe_xcalloc((size_t)l->n + 1, sizeof(*v));
	for (int i = 0; i < l->n; i++)
		v[i] = &l->v[i];
	qsort(v, (size_t)l->n, sizeof(*v), cmp_case_at);
	int rc = 0;
	for (int i = 1; i < l->n && !rc; i++)
		if (!strcmp(v[i - 1]->name, v[i]->name)) {
			snprintf(err, errlen, "%s:%d: case '%s' is also defined at %s:%d (case names must be unique in a run)",
				 v[i]->file, v[i]->line, v[i]->name, v[i - 1]->file, v[i - 1]->line);
			rc = -1;
		}
	free(v);
	return rc;
}

int moe_scenario_load(const char *path, char *const *sets, int nsets, struct moe_caselist *out, char *err,
		      size_t errlen)
{
	struct parse_state ps = {.path = path};
	int rc = -1;
	char why[1024];
	FILE *f = moe_open_input(path, MOE_SCENARIO_MAX_BYTES, why, sizeof(why));
	if (!f) {
		snprintf(err, errlen, "%s", why);
		return -1;
	}
	void *stream[2] = {f, &ps};
	ini_allow_multiline = false; /* a continuation line would make line numbers lie */
	ini_stop_on_first_error = true;
	int r = ini_parse_stream(reader, stream, handler, &ps);
	fclose(f);
	if (ps.failed) {
		snprintf(err, errlen, "%s", ps.err);
		goto out;
	}
	if (r > 0) {
		snprintf(err, errlen, "%s:%d: not INI syntax (expected [section] or key = value)", path, r);
		goto out;
	}
	if (r < 0) {
		snprintf(err, errlen, "%s: cannot read", path);
		goto out;
	}
	int base = ps.n;
	for (int i = 0; i < nsets; i++) {
		const char *eq = strchr(sets[i], '=');
		char key[64];
		if (!eq || eq == sets[i] || (size_t)(eq - sets[i]) >= sizeof(key)) {
			snprintf(err, errlen, "--set %s: expected KEY=VALUE", sets[i]);
			goto out;
		}
		memcpy(key, sets[i], (size_t)(eq - sets[i]));
		key[eq - sets[i]] = 0;
		if (!moe_opt_find(key)) {
			snprintf(err, errlen, "--set %s: unknown key '%s' (moebench help keys lists them)", sets[i], key);
			goto out;
		}
		add_entry(&ps, "\x01set", key, eq + 1, 0);
	}
	char dirbuf[PATH_MAX], base_dir[MOE_PATH_MAX];
	if (!realpath(path, dirbuf))
		snprintf(dirbuf, sizeof(dirbuf), "%s", path);
	const char *dn = dirname(dirbuf);
	size_t dl = strlen(dn);
	if (dl >= sizeof(base_dir)) {
		snprintf(err, errlen, "%s: folder path longer than %d characters", path, MOE_PATH_MAX - 1);
		goto out;
	}
	memcpy(base_dir, dn, dl + 1);
	int ncases = 0, gi = find_section(&ps, "global");
	struct sections none = {.first = 0, .count = 0}, setr = {.first = base, .count = ps.n - base};
	const struct sections *glob = gi >= 0 ? &ps.sec[gi] : &none;
	for (int s = 0; s < ps.nsec; s++) {
		if (s == gi)
			continue;
		ncases++;
		/* later sources override earlier ones: global < section < --set; each a range of entries */
		const struct sections *order[3] = {glob, &ps.sec[s], &setr};
		struct entry **m = moe_xcalloc((size_t)(glob->count + ps.sec[s].count + setr.count) + 1, sizeof(*m));
		int nm = 0;
		for (int o = 0; o < 3; o++)
			for (int i = order[o]->first; i < order[o]->first + order[o]->count; i++) {
				int j = 0;
				while (j < nm && strcmp(m[j]->key, ps.e[i].key))
					j++;
				m[j] = &ps.e[i];
				if (j == nm)
					nm++;
			}
		int er = expand(path, base_dir, &ps.sec[s], m, nm, out, err, errlen);
		free(m);
		if (er)
			goto out;
	}
	if (!ncases) {
		snprintf(err, errlen, "%s: no cases (every section but [global] is a case)", path);
		goto out;
	}
	rc = check_unique_names(out, err, errlen);
out:
	for (int i = 0; i < ps.n; i++)
		free(ps.e[i].value);
	free(ps.e);
	free(ps.sec);
	free(ps.slot);
	return rc;
}

void moe_caselist_free(struct moe_caselist *l)
{
	free(l->v);
	memset(l, 0, sizeof(*l));
}
