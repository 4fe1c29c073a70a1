/* The launcher: one case from its record's header to its verdict. Make the segment, start the ranks
 * (spawn.c), supervise them (supervise.c), tear down, collect their results into the case's record. */
#include "launch_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "accounting.h"
#include "aggregate.h"
#include "moe.h"
#include "results.h"
#include "status.h"
#include "strategy.h"

volatile sig_atomic_t moe_interrupted;

/* The case as the record begins it: where it came from, every parameter rendered. */
static void case_header(json_t *cj, const struct moe_case *c)
{
	json_object_set_new(cj, "name", moe_json_text(c->name));
	json_object_set_new(cj, "file", moe_json_text(c->file));
	json_object_set_new(cj, "line", json_integer(c->line));
	json_t *params = json_object();
	for (size_t i = 0; i < moe_nopts; i++) {
		char v[8192];
		moe_param_render(&c->p, &moe_opts[i], v, sizeof(v));
		json_object_set_new(params, moe_opts[i].name, json_string(v));
	}
	json_object_set_new(cj, "params", params);
}

/* Each DP group's tokens into the record, and the row counts that size the symmetric heap. */
static void case_tokens(json_t *cj, const struct moe_params *p, int n, int64_t *max_rows, int64_t *sum_rows,
			size_t *part_sym)
{
	int64_t *tokens = moe_xcalloc((size_t)p->dp, sizeof(int64_t));
	moe_tokens_resolve(p, tokens);
	json_t *jt = json_array();
	*max_rows = *sum_rows = 0;
	for (int64_t d = 0; d < p->dp; d++)
		json_array_append_new(jt, json_integer(tokens[d]));
	for (int r = 0; r < n; r++) {
		int64_t rows = moe_rows_dispatched(p, tokens, r);
		*max_rows = MOE_MAX(*max_rows, rows);
		*sum_rows += rows;
	}
	*part_sym = moe_partition_sym_bytes(p, tokens);
	free(tokens);
	json_object_set_new(cj, "tokens", jt);
}

/* Does the backend run ll's layer (its four ops and experts with device counts)? */
static int ll_backend(const struct moe_backend_ops *be)
{
	return be->ffn_dev && be->ll_dispatch && be->ll_receive && be->ll_return && be->ll_wait_return;
}

/* Why this case cannot run here, or MOE_EXIT_OK: _SKIP for what this build, machine or launch lacks, _USAGE
 * for a combination that would only hang or crash the ranks. */
static int refusal(const struct moe_params *p, const struct moe_plan *plan, int n, int gathered,
		   const struct moe_strategy_ops *st, char *reason, size_t len)
{
	int host_transport = p->transport == MOE_TRANSPORT_SHM || p->transport == MOE_TRANSPORT_MPI;
	/* contradictions first: they are the user's to fix on any machine, never "nothing runnable here" */
	if ((p->backend == MOE_BACKEND_HOST) != host_transport)
		snprintf(reason, len, "transport %s does not work with backend %s (shm and mpi go with host; ipc and "
			 "nccl with cuda)", moe_transport_name(p->transport), moe_backend_name(p->backend));
	else if (p->transport == MOE_TRANSPORT_NCCL && p->strategy == MOE_STRAT_DWDP)
		snprintf(reason, len, "dwdp pulls weights with one-sided reads, which nccl does not offer: use ipc");
	else if (p->strategy == MOE_STRAT_LL && (p->transport == MOE_TRANSPORT_NCCL || p->transport == MOE_TRANSPORT_MPI))
		snprintf(reason, len, "ll needs a transport that maps peers' memory: shm or ipc (transport %s does not)",
			 moe_transport_name(p->transport));
	if (reason[0])
		return MOE_EXIT_USAGE;
	if (n > MOE_MAX_RANKS)
		snprintf(reason, len, "%d ranks: more than %d", n, MOE_MAX_RANKS);
	else if (!st)
		snprintf(reason, len, "strategy %s is not implemented in this build", moe_strategy_name(p->strategy));
	else if (!moe_backend_find(moe_backend_name(p->backend)))
		snprintf(reason, len, "backend %s is not built in (CUDA was not found at build time)",
			 moe_backend_name(p->backend));
	else if (p->strategy == MOE_STRAT_LL && !ll_backend(moe_backend_find(moe_backend_name(p->backend))))
		snprintf(reason, len, "backend %s does not implement ll's device-initiated ops in this build",
			 moe_backend_name(p->backend));
	else if (p->backend == MOE_BACKEND_CUDA && plan->ngpus == 0)
		snprintf(reason, len, "backend cuda: no NVIDIA GPU on this machine");
	else if (p->backend == MOE_BACKEND_HOST && (p->transport == MOE_TRANSPORT_MPI) != gathered)
		snprintf(reason, len, gathered ? "transport shm needs the fork launcher's shared segment: use mpi "
			 "under mpirun or srun" : "transport mpi runs under mpirun or srun (moebench run started by them)");
	if (!reason[0] && p->transport == MOE_TRANSPORT_NCCL && n > plan->ngpus) {
		/* NCCL refuses two ranks on one GPU: say so instead of letting the ranks hang or crash */
		snprintf(reason, len, "transport nccl needs one GPU per rank: %d ranks, %d GPU%s (use --transport ipc)",
			 n, plan->ngpus, plan->ngpus == 1 ? "" : "s");
		return MOE_EXIT_USAGE;
	}
	return reason[0] ? MOE_EXIT_SKIP : MOE_EXIT_OK;
}

/* The case segment: the status area the ranks report their phase in, the control plane, one heap a rank. */
static int make_segment(struct launch *L, size_t seg)
{
	L->shm = memfd_create("moebench-case", MFD_CLOEXEC);
	if (L->shm < 0 || ftruncate(L->shm, (off_t)seg) ||
	    (L->status = mmap(NULL, MOE_STATUS_BYTES, PROT_READ | PROT_WRITE, MAP_SHARED, L->shm, 0)) == MAP_FAILED) {
		snprintf(L->reason, sizeof(L->reason), "case segment of %zu bytes: %s", seg, strerror(errno));
		return -1;
	}
	L->status->magic = MOE_STATUS_MAGIC;
	L->status->nranks = (uint32_t)L->n;
	for (int r = 0; r < L->n; r++)
		atomic_store(&L->status->phase[r], MOE_PH_start);
	return 0;
}

/* Each rank's record with its placement; *mismatch and *first_bad (borrowed) for a rank that found one. */
static json_t *rank_records(const struct launch *L, int *mismatch, json_t **first_bad)
{
	json_t *ranks = json_array();
	for (int r = 0; r < L->n; r++) {
		const struct moe_rank_place *pl = &L->plan->ranks[r % L->plan->nranks];
		json_t *rj = L->rp[r].result ? json_deep_copy(L->rp[r].result) : json_object();
		json_object_set_new(rj, "rank", json_integer(r));
		json_object_set_new(rj, "gpu", json_integer(pl->gpu));
		json_object_set_new(rj, "cpuset", json_string(pl->cpuset_str));
		json_object_set_new(rj, "numa", json_integer(pl->numa_node));
		const char *v = json_string_value(json_object_get(rj, "verdict"));
		if (v && strcmp(v, "ok") && strcmp(v, "unchecked")) {
			*mismatch = 1;
			if (!*first_bad)
				*first_bad = json_object_get(rj, "first_bad");
		}
		json_array_append_new(ranks, rj);
	}
	return ranks;
}

/* The TP ranks of a DP group hold the same merged output: their digests must agree. Returns the first
 * disagreement as a first_bad record (owned), or NULL. */
static json_t *check_digests(json_t *cj, const struct launch *L, int *mismatch)
{
	json_t *dig = json_array(), *tp_bad = NULL;
	for (int r = 0; r < L->n; r++) {
		const char *a = json_string_value(json_object_get(L->rp[r].result, "digest"));
		int d0 = r - r % (int)L->p->tp;
		const char *b = json_string_value(json_object_get(L->rp[d0].result, "digest"));
		if (r % L->p->tp == 0)
			json_array_append_new(dig, json_string(a ? a : ""));
		else if (!a || !b || strcmp(a, b)) {
			*mismatch = 1;
			if (!tp_bad)
				tp_bad = json_pack("{s:i,s:i,s:i,s:i,s:s}", "rank", r, "layer", -1, "token", -1, "column", -1,
						   "what", "tp_merge: this rank's output differs from its TP leader's");
		}
	}
	json_object_set_new(cj, "digests", dig);
	return tp_bad;
}

/* Every rank reported: agreement across TP ranks, accounting, aggregates, and the case's verdict. */
static int verdict(json_t *cj, const struct launch *L, json_t *ranks, int mismatch, json_t *first_bad)
{
	const struct moe_params *p = L->p;
	json_t *tp_bad = check_digests(cj, L, &mismatch);
	/* what each rank counted against what its strategy requires (accounting.c says why here) */
	int64_t *tk = moe_xcalloc((size_t)p->dp, sizeof(int64_t));
	moe_tokens_resolve(p, tk);
	json_t *acct = moe_accounting_check(p, tk, ranks);
	free(tk);
	const char *acct_what = acct ? json_string_value(json_object_get(acct, "what")) : "ok";
	json_object_set_new(cj, "accounting", json_string(acct_what));
	if (acct) {
		mismatch = 1;
		if (!tp_bad)
			tp_bad = acct;
		else
			json_decref(acct);
	}
	json_t **results = moe_xcalloc((size_t)L->n, sizeof(*results));
	for (int r = 0; r < L->n; r++)
		results[r] = L->rp[r].result;
	moe_aggregate_case(cj, results, L->n, p, L->plan->ngpus, L->o->gemm_TFLOPs, L->o->copy_GBps);
	free(results);
	int outcome = MOE_EXIT_OK;
	if (mismatch) {
		outcome = MOE_EXIT_FAIL;
		json_object_set_new(cj, "verdict", json_string("mismatch"));
		if (first_bad)
			json_object_set(cj, "first_bad", first_bad);
		else if (tp_bad)
			json_object_set(cj, "first_bad", tp_bad);
	} else /* check = off: it ran and its timings are real, but nothing says its output is right */
		json_object_set_new(cj, "verdict", json_string(p->check.kind == MOE_CHECK_OFF ? "unchecked" : "ok"));
	json_decref(tp_bad);
	return outcome;
}

/* An external launch: the reports rank 0 gathered stand for the ranks' messages; nothing is spawned. */
static int take_gathered(struct launch *L, const struct moe_gathered *g)
{
	for (int r = 0; r < L->n; r++)
		L->reported += (L->rp[r].result = json_incref(g->reports[r])) != NULL;
	snprintf(L->reason, sizeof(L->reason), "%s", g->reason ? g->reason : "");
	return g->outcome;
}

/* Collect the ranks' records into the case's record and give it its verdict (or its reason). */
static int collect(json_t *cj, struct launch *L, int outcome)
{
	if (outcome == MOE_EXIT_OK && L->reported < L->n) {
		snprintf(L->reason, sizeof(L->reason), "%d of %d ranks reported", L->reported, L->n);
		outcome = MOE_EXIT_RANK;
	}
	int mismatch = 0;
	json_t *first_bad = NULL; /* borrowed from a rank's record */
	json_t *ranks = rank_records(L, &mismatch, &first_bad);
	if (outcome == MOE_EXIT_OK)
		outcome = verdict(cj, L, ranks, mismatch, first_bad);
	else {
		json_object_set_new(cj, "verdict", json_string(outcome == MOE_EXIT_SKIP ? "skipped" : "error"));
		/* a rank's message may quote bytes of a binary input: kept as \xHH, not dropped by jansson */
		char *reason8 = moe_utf8_escape(L->reason);
		json_object_set_new(cj, "reason", json_string(reason8));
		free(reason8);
	}
	json_object_set_new(cj, "ranks", ranks);
	json_t *pids = json_array();
	for (int r = 0; r < L->n; r++)
		if (L->rp[r].pid > 0)
			json_array_append_new(pids, json_integer(L->rp[r].pid));
	json_object_set_new(cj, "pids", pids);
	return outcome;
}

/* Close what the case held: sockets, results, the status mapping, the segment. */
static void release(struct launch *L)
{
	for (int r = 0; r < L->n; r++) {
		if (L->rp[r].fd >= 0)
			close(L->rp[r].fd);
		json_decref(L->rp[r].result);
		free(L->rp[r].gather);
	}
	free(L->rp);
	if (L->status != MAP_FAILED)
		munmap(L->status, MOE_STATUS_BYTES);
	if (L->shm >= 0)
		close(L->shm);
}

int moe_launch_case(const struct moe_case *c, hwloc_topology_t topo, const struct moe_plan *plan,
		    const struct moe_run_opts *o, const char *exe, json_t **case_json)
{
	struct launch L = {.c = c, .p = &c->p, .plan = plan, .o = o, .n = (int)(c->p.dp * c->p.tp),
			   .shm = -1, .status = MAP_FAILED};
	json_t *cj = json_object();
	*case_json = cj;
	case_header(cj, c);
	int64_t max_rows, sum_rows;
	size_t part_sym;
	case_tokens(cj, L.p, L.n, &max_rows, &sum_rows, &part_sym);

	const struct moe_strategy_ops *st = moe_strategy_find(moe_strategy_name(L.p->strategy));
	int refused = refusal(L.p, plan, L.n, o->gathered != NULL, st, L.reason, sizeof(L.reason));
	if (refused != MOE_EXIT_OK) {
		json_object_set_new(cj, "verdict", json_string(refused == MOE_EXIT_USAGE ? "error" : "skipped"));
		json_object_set_new(cj, "reason", json_string(L.reason));
		return refused;
	}
	if (o->gathered && o->gathered->precheck)
		return MOE_EXIT_OK;

	size_t heap = st->sym_bytes(L.p, max_rows, sum_rows) + part_sym;
	size_t seg = MOE_STATUS_BYTES + moe_shm_ctl_bytes(L.n, (int)L.p->dp) + (size_t)L.n * heap;
	L.rp = moe_xcalloc((size_t)L.n, sizeof(*L.rp));
	for (int r = 0; r < L.n; r++)
		L.rp[r].fd = -1;
	int outcome = MOE_EXIT_OK;
	if (o->gathered) /* the ranks ran under MPI (world.c): judge what rank 0 gathered */
		outcome = take_gathered(&L, o->gathered);
	else if (make_segment(&L, seg))
		outcome = MOE_EXIT_RANK;
	else {
		L.t_start = moe_now_us();
		if (moe_launch_spawn(&L, exe, topo))
			outcome = MOE_EXIT_RANK;
		else {
			moe_launch_supervise(&L);
			if (L.failed)
				outcome = L.skip ? MOE_EXIT_SKIP : L.usage ? MOE_EXIT_USAGE : MOE_EXIT_RANK;
			json_object_set_new(cj, "wall_s", json_real((moe_now_us() - L.t_start) * 1e-6));
		}
	}
	moe_launch_kill_all(L.rp, L.n, L.pgid);
	outcome = collect(cj, &L, outcome);
	release(&L);
	return outcome;
}

char *moe_launch_case_text(const struct moe_case *c, const struct moe_run_opts *o, int rank)
{
	return moe_launch_text(c, o, rank);
}
