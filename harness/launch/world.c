/* External launch: join the MPI world, check its size against the launcher's, pin by local rank, then run
 * each case on every rank in this process (the same rank code the fork launcher execs), gather the ranks'
 * reports to rank 0 and judge them with the launcher's own code, one case at a time. */
#include "world.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "external.h"
#include "kernels.h"
#include "moe.h"
#include "params.h"

#ifdef MOE_HAVE_MPI

#include <fcntl.h>
#include <pthread.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>

#include "boot.h"
#include "mpi_iface.h"
#include "rank.h"
#include "world_impl.h"

/* Node names from every rank: node index by first appearance, local rank by order on the node. */
static int world_nodes(struct moe_world *w)
{
	char me[MOE_NODE_MAX] = "";
	if (w->env.node[0])
		snprintf(me, sizeof(me), "%.63s", w->env.node);
	else
		gethostname(me, sizeof(me) - 1);
	char (*all)[MOE_NODE_MAX] = moe_xcalloc((size_t)w->size, MOE_NODE_MAX);
	if (MPI_Allgather(me, MOE_NODE_MAX, MPI_CHAR, all, MOE_NODE_MAX, MPI_CHAR, w->ctl) != MPI_SUCCESS)
		return -1;
	w->node_of = moe_xcalloc((size_t)w->size, sizeof(int));
	w->node_names = moe_xcalloc((size_t)w->size, MOE_NODE_MAX);
	w->local_rank = w->local_size = 0;
	for (int r = 0; r < w->size; r++) {
		int k = 0;
		while (k < w->nnodes && strcmp(w->node_names[k], all[r]))
			k++;
		if (k == w->nnodes)
			memcpy(w->node_names[w->nnodes++], all[r], MOE_NODE_MAX);
		w->node_of[r] = k;
	}
	for (int r = 0; r < w->size; r++)
		if (w->node_of[r] == w->node_of[w->rank]) {
			w->local_rank += r < w->rank;
			w->local_size++;
		}
	free(all);
	return 0;
}

/* Pin by the launcher's local rank with the fork launcher's plan, before MPI starts its threads. */
static int world_pin(struct moe_world *w, const struct moe_run_opts *o, struct moe_placed *mine, char *err, size_t len)
{
	hwloc_topology_t topo;
	struct moe_plan plan;
	if (moe_topo_load(&topo, o->topo_xml, err, len))
		return -1;
	int rc = moe_plan_build(topo, w->env.local_size, o->bind, &plan, err, len);
	if (!rc) {
		rc = moe_plan_apply(topo, &plan, w->env.local_rank, err, len);
		w->bind = plan.bind;
		const struct moe_rank_place *pl = &plan.ranks[w->env.local_rank];
		mine->gpu = pl->gpu;
		mine->numa = pl->numa_node;
		snprintf(mine->cpuset, sizeof(mine->cpuset), "%s", pl->cpuset_str);
		if (pl->gpu >= 0) {
			char v[16];
			snprintf(v, sizeof(v), "%d", pl->gpu);
			setenv("CUDA_DEVICE_ORDER", "PCI_BUS_ID", 1);
			setenv("MOEBENCH_GPU", v, 1);
		}
		moe_plan_free(&plan);
	}
	hwloc_topology_destroy(topo);
	return rc;
}

struct moe_world *moe_world_join(const struct moe_ext_env *e, const struct moe_run_opts *o, int *rc)
{
	struct moe_world *w = moe_xcalloc(1, sizeof(*w));
	w->env = *e;
	struct moe_placed mine = {-1, -1, "all"};
	char err[512];
	*rc = MOE_EXIT_USAGE;
	if (world_pin(w, o, &mine, err, sizeof(err)))
		fprintf(stderr, "moebench: rank %d: pinning failed: %s\n", e->rank, err);
	/* Open MPI 4's pt2pt one-sided component refuses MPI_THREAD_MULTIPLE: let it pick ucx (or rdma) unless
	 * the user chose; other MPI libraries ignore the variable */
	setenv("OMPI_MCA_osc", "^pt2pt", 0);
	int provided = 0;
	if (MPI_Init_thread(NULL, NULL, MPI_THREAD_MULTIPLE, &provided) != MPI_SUCCESS) {
		fprintf(stderr, "moebench: rank %d: MPI_Init_thread failed\n", e->rank);
		free(w);
		return NULL;
	}
	MPI_Comm_rank(MPI_COMM_WORLD, &w->rank);
	MPI_Comm_size(MPI_COMM_WORLD, &w->size);
	/* MPICH under srun --mpi=pmix starts N one-rank worlds that all exit 0: refuse them loudly */
	if (w->size != e->size || w->rank != e->rank) {
		fprintf(stderr, "moebench: %s started %d ranks (%s) but MPI sees rank %d of a world of %d: the MPI library "
			"does not speak this launcher's wire-up (e.g. MPICH under srun --mpi=pmix); use its own "
			"launcher or a matching --mpi\n", e->launcher, e->size, e->size_var, w->rank, w->size);
		MPI_Finalize();
		free(w);
		return NULL;
	}
	if (provided < MPI_THREAD_MULTIPLE) {
		fprintf(stderr, "moebench: the MPI library gives thread level %d, not MPI_THREAD_MULTIPLE (the watchdog and "
			"dwdp's fetch thread call MPI)\n", provided);
		MPI_Abort(MPI_COMM_WORLD, MOE_EXIT_USAGE);
	}
	MPI_Comm_dup(MPI_COMM_WORLD, &w->ctl);
	MPI_Comm_dup(MPI_COMM_WORLD, &w->sup);
	MPI_Comm_dup(MPI_COMM_WORLD, &w->boot);
	int len = 0;
	MPI_Get_library_version(w->mpi_library, &len);
	w->mpi_library[strcspn(w->mpi_library, "\n,")] = 0;
	w->placed = moe_xcalloc((size_t)w->size, sizeof(*w->placed));
	if (world_nodes(w) ||
	    MPI_Allgather(&mine, sizeof(mine), MPI_BYTE, w->placed, sizeof(mine), MPI_BYTE, w->ctl) != MPI_SUCCESS) {
		fprintf(stderr, "moebench: rank %d: exchanging node names failed\n", w->rank);
		MPI_Abort(MPI_COMM_WORLD, MOE_EXIT_RANK);
	}
	pthread_mutex_init(&w->lock, NULL);
	moe_log_rank = w->rank;
	*rc = MOE_EXIT_OK;
	return w;
}

/* Messages the in-process rank sends on its bootstrap socket, read by a thread so a large report never
 * blocks it; all-gathers go over MPI (the nccl unique id, ipc handles). */
struct drain {
	struct moe_world *w;
	int fd, n;
	json_t *result;
	char error[1024];
};

static void *drain_main(void *arg)
{
	struct drain *d = arg;
	uint32_t type;
	char *buf;
	size_t len;
	while (!moe_msg_recv(d->fd, &type, &buf, &len)) {
		if (type == MOE_MSG_RESULT && !d->result)
			d->result = json_loads(buf, 0, NULL);
		else if (type == MOE_MSG_ERROR)
			snprintf(d->error, sizeof(d->error), "%s", buf);
		else if (type == MOE_MSG_LOG)
			moe_warn("%s", buf);
		else if (type == MOE_MSG_ALLGATHER) {
			char *all = moe_xmalloc(len * (size_t)d->n + 1);
			MPI_Allgather(buf, (int)len, MPI_BYTE, all, (int)len, MPI_BYTE, moe_mpi_case.comm);
			moe_msg_send(d->fd, MOE_MSG_ALLGATHER, all, len * (size_t)d->n);
			free(all);
		}
		free(buf);
	}
	return NULL;
}

static void set_env_int(const char *k, int v)
{
	char s[16];
	snprintf(s, sizeof(s), "%d", v);
	setenv(k, s, 1);
}

/* This rank's share of case c, in this process; returns {"rc", "result" | "error"} as JSON text. */
static char *run_here(struct moe_world *w, const struct moe_case *c, const struct moe_run_opts *o, int n)
{
	json_t *rep = json_object();
	int sv[2] = {-1, -1}, shm = memfd_create("moebench-status", MFD_CLOEXEC);
	struct moe_status_area *st = MAP_FAILED;
	if (shm < 0 || ftruncate(shm, MOE_STATUS_BYTES) || socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) ||
	    (st = mmap(NULL, MOE_STATUS_BYTES, PROT_READ | PROT_WRITE, MAP_SHARED, shm, 0)) == MAP_FAILED) {
		json_object_set_new(rep, "rc", json_integer(MOE_EXIT_RANK));
		json_object_set_new(rep, "error", json_sprintf("case setup: %s", strerror(errno)));
		goto out;
	}
	st->magic = MOE_STATUS_MAGIC;
	st->nranks = (uint32_t)n;
	char *text = moe_launch_case_text(c, o, w->rank);
	moe_msg_send(sv[0], MOE_MSG_CASE, text, strlen(text));
	free(text);
	set_env_int("MOEBENCH_RANK", w->rank);
	set_env_int("MOEBENCH_NRANKS", n);
	set_env_int("MOEBENCH_BOOT_FD", sv[1]);
	set_env_int("MOEBENCH_SHM_FD", shm);
	struct drain d = {.w = w, .fd = sv[0], .n = n};
	pthread_t th;
	pthread_create(&th, NULL, drain_main, &d);
	pthread_mutex_lock(&w->lock);
	w->status = st;
	pthread_mutex_unlock(&w->lock);
	moe_mpi_case.wire_intra = moe_mpi_case.wire_inter = 0;
	int rc = moe_rank_main();
	shutdown(sv[1], SHUT_WR); /* the drain thread reads to the end of what the rank sent */
	pthread_join(th, NULL);
	pthread_mutex_lock(&w->lock);
	w->status = NULL; /* unmapped below: the watchdog must not read it */
	pthread_mutex_unlock(&w->lock);
	json_object_set_new(rep, "rc", json_integer(rc));
	if (d.error[0])
		json_object_set_new(rep, "error", json_string(d.error));
	if (d.result) {
		/* bytes per iteration: every iteration, warm-up included, moves the same bytes */
		double its = (double)(c->p.iters + c->p.warmup);
		json_t *b = json_object_get(d.result, "bytes");
		json_object_set_new(b, "wire_intra", json_integer((json_int_t)(moe_mpi_case.wire_intra / its)));
		json_object_set_new(b, "wire_inter", json_integer((json_int_t)(moe_mpi_case.wire_inter / its)));
		json_object_set_new(d.result, "node", json_string(w->node_names[w->node_of[w->rank]]));
		json_object_set_new(rep, "result", d.result);
	}
	if (rc == MOE_EXIT_RANK) {
		/* the transport may be half-used: peers can wait forever, so rank 0 ends the job */
		char why[1400];
		snprintf(why, sizeof(why), "rank %d on %s: %s", w->rank, w->node_names[w->node_of[w->rank]],
			 d.error[0] ? d.error : "failed");
		moe_watchdog_notify(w, why);
	}
out:
	if (st != MAP_FAILED)
		munmap(st, MOE_STATUS_BYTES);
	for (int i = 0; i < 2; i++)
		if (sv[i] >= 0)
			close(sv[i]);
	if (shm >= 0)
		close(shm);
	char *s = json_dumps(rep, JSON_COMPACT);
	json_decref(rep);
	return s;
}

/* Wait for a collective without spinning: a rank outside the case, or one that finished its share, waits
 * for the others here, and on a node with more ranks than cores (CI) a busy wait takes their cores. The
 * sleep grows to 1 ms, so a case starts at most about that late. The communicator's error handler is
 * MPI's default (errors are fatal), so MPI_Test returns only with the request done or still pending. */
static void wait_idle(MPI_Request *req)
{
	int done = 0;
	for (long ns = 20000; MPI_Test(req, &done, MPI_STATUS_IGNORE) == MPI_SUCCESS && !done;
	     ns = MOE_MIN(2 * ns, 1000000)) {
		struct timespec ts = {0, ns};
		nanosleep(&ts, NULL);
	}
}

/* Rank 0 names the next case (or GO_STOP) to every rank. Every rank, root included, uses the nonblocking
 * call: MPI does not match a blocking collective with a nonblocking one. */
static void bcast_go(struct moe_world *w, int *go)
{
	MPI_Request req;
	MPI_Ibcast(go, 1, MPI_INT, 0, w->ctl, &req);
	wait_idle(&req);
}

/* Every rank: the case's communicator, its share, and its report gathered to rank 0 (NULL elsewhere). */
static char **run_everywhere(struct moe_world *w, const struct moe_case *c, const struct moe_run_opts *o)
{
	int n = (int)(c->p.dp * c->p.tp);
	MPI_Comm cc;
	MPI_Comm_split(w->ctl, w->rank < n ? 0 : MPI_UNDEFINED, w->rank, &cc);
	moe_mpi_case.comm = cc;
	moe_mpi_case.node_of = w->node_of;
	/* the case lasts until rank 0 has every report: a rank that finished its share still waits for it */
	pthread_mutex_lock(&w->lock);
	w->c = c;
	w->n_case = n;
	w->opts = *o;
	w->deadline_us = moe_now_us() + c->p.timeout * 1e6;
	w->timeout_s = c->p.timeout;
	w->active = w->rank < n;
	pthread_mutex_unlock(&w->lock);
	char *mine = w->rank < n ? run_here(w, c, o, n) : moe_xstrdup("{}");
	if (cc != MPI_COMM_NULL)
		MPI_Comm_free(&cc);
	moe_mpi_case.comm = MPI_COMM_NULL;
	int len = (int)strlen(mine) + 1, *lens = NULL, *displs = NULL;
	char *all = NULL, **out = NULL;
	if (w->rank == 0) {
		lens = moe_xcalloc((size_t)w->size, sizeof(int));
		displs = moe_xcalloc((size_t)w->size, sizeof(int));
	}
	MPI_Request req;
	MPI_Igather(&len, 1, MPI_INT, lens, 1, MPI_INT, 0, w->ctl, &req);
	wait_idle(&req);
	if (w->rank == 0) {
		size_t tot = 0;
		for (int r = 0; r < w->size; r++) {
			displs[r] = (int)tot;
			tot += (size_t)lens[r];
		}
		all = moe_xmalloc(tot);
	}
	MPI_Gatherv(mine, len, MPI_CHAR, all, lens, displs, MPI_CHAR, 0, w->ctl);
	free(mine);
	pthread_mutex_lock(&w->lock);
	w->active = 0;
	pthread_mutex_unlock(&w->lock);
	if (w->rank == 0) {
		out = moe_xcalloc((size_t)w->size, sizeof(char *));
		for (int r = 0; r < w->size; r++)
			out[r] = moe_xstrdup(all + displs[r]);
	}
	free(all);
	free(lens);
	free(displs);
	return out;
}

/* Groups that must stay on one node, or "" (the rule's text otherwise). */
static void layout_rule(const struct moe_world *w, const struct moe_params *p, int n, char *why, size_t len)
{
	int tp = (int)p->tp, dwdp = p->strategy == MOE_STRAT_DWDP;
	int g = dwdp ? (int)(p->dwdp_size ? p->dwdp_size : n) : tp;
	const char *what = dwdp ? "a dwdp group" : "a TP group";
	why[0] = 0;
	if (!dwdp && (tp == 1 || p->partition == MOE_PART_REPLICATE) && p->transport != MOE_TRANSPORT_IPC)
		return;
	if (p->transport == MOE_TRANSPORT_IPC)
		g = n, what = "the ipc transport's ranks";
	for (int r = 0; r < n; r++)
		if (w->node_of[r] != w->node_of[r - r % g]) {
			snprintf(why, len, "rule: %s must lie within one node (dwdp groups and leader/sp TP groups read and "
				 "merge through node-local memory): ranks %d (%s) and %d (%s) of group %d are on different "
				 "nodes; use more ranks per node or a smaller group", what, r - r % g,
				 w->node_names[w->node_of[r - r % g]], r, w->node_names[w->node_of[r]], r / g);
			return;
		}
}

static void case_verdict(json_t *cj, const char *verdict, const char *reason)
{
	json_object_set_new(cj, "verdict", json_string(verdict));
	json_object_set_new(cj, "reason", json_string(reason));
}

void moe_world_plan(const struct moe_world *w, int n, struct moe_plan *plan)
{
	moe_plan_free(plan);
	memset(plan, 0, sizeof(*plan));
	plan->nranks = n;
	plan->bind = w->bind;
	plan->ranks = moe_xcalloc((size_t)n, sizeof(*plan->ranks));
	for (int r = 0; r < n; r++) {
		plan->ranks[r].rank = r;
		plan->ranks[r].gpu = w->placed[r].gpu;
		plan->ranks[r].numa_node = w->placed[r].numa;
		snprintf(plan->ranks[r].cpuset_str, sizeof(plan->ranks[r].cpuset_str), "%s", w->placed[r].cpuset);
		plan->ngpus += w->placed[r].gpu >= 0 && (r == 0 || w->placed[r].gpu != w->placed[r - 1].gpu);
	}
}

/* rank 0: turn the gathered texts into reports and the case's outcome. */
static int judge(struct moe_world *w, char **texts, int n, json_t **reports, char *reason, size_t len)
{
	int outcome = MOE_EXIT_OK;
	for (int r = 0; r < n; r++) {
		json_t *rep = json_loads(texts[r], 0, NULL);
		int rc = (int)json_integer_value(json_object_get(rep, "rc"));
		reports[r] = json_incref(json_object_get(rep, "result"));
		if (rc != MOE_EXIT_OK && rc != MOE_EXIT_FAIL && outcome == MOE_EXIT_OK) {
			outcome = rc == MOE_EXIT_SKIP || rc == MOE_EXIT_USAGE ? rc : MOE_EXIT_RANK;
			const char *e = json_string_value(json_object_get(rep, "error"));
			snprintf(reason, len, "rank %d on %s: %s", r, w->node_names[w->node_of[r]], e ? e : "failed");
		}
		json_decref(rep);
	}
	return outcome;
}

enum { GO_STOP = -1 };

int moe_world_case(struct moe_world *w, const struct moe_case *c, struct moe_plan *plan, const struct moe_run_opts *o,
		   json_t **case_json)
{
	int n = (int)(c->p.dp * c->p.tp);
	char why[1024];
	struct moe_gathered g = {.precheck = 1};
	struct moe_run_opts o2 = *o;
	o2.gathered = &g;
	moe_world_plan(w, MOE_MIN(n, w->size), plan);
	int rc = moe_launch_case(c, NULL, plan, &o2, NULL, case_json);
	if (rc != MOE_EXIT_OK)
		return rc;
	layout_rule(w, &c->p, MOE_MIN(n, w->size), why, sizeof(why));
	if (n > w->size) {
		snprintf(why, sizeof(why), "%d ranks: the launcher started %d", n, w->size);
		case_verdict(*case_json, "skipped", why);
		return MOE_EXIT_SKIP;
	}
	if (why[0]) {
		case_verdict(*case_json, "error", why);
		return MOE_EXIT_USAGE;
	}
	json_decref(*case_json);
	int go = (int)(c - w->cases);
	double t0 = moe_now_us();
	if (w->launch && !json_object_get(w->launch, "first_case_ready_unix")) {
		/* every rank has joined, pinned itself and parsed the scenarios: the launch is done */
		struct timespec now;
		clock_gettime(CLOCK_REALTIME, &now);
		json_object_set_new(w->launch, "first_case_ready_unix", json_real((double)now.tv_sec + now.tv_nsec * 1e-9));
	}
	bcast_go(w, &go);
	char **texts = run_everywhere(w, c, o);
	json_t **reports = moe_xcalloc((size_t)n, sizeof(json_t *));
	g = (struct moe_gathered){.reports = reports, .reason = why};
	g.outcome = judge(w, texts, n, reports, why, sizeof(why));
	rc = moe_launch_case(c, NULL, plan, &o2, NULL, case_json);
	json_object_set_new(*case_json, "wall_s", json_real((moe_now_us() - t0) * 1e-6));
	json_t *b = json_object_get(*case_json, "bytes");
	if (b && rc != MOE_EXIT_USAGE) {
		double intra = 0, inter = 0;
		for (int r = 0; r < n; r++) {
			json_t *rb = json_object_get(reports[r], "bytes");
			intra += (double)json_integer_value(json_object_get(rb, "wire_intra"));
			inter += (double)json_integer_value(json_object_get(rb, "wire_inter"));
		}
		json_object_set_new(b, "wire_intra_per_rank", json_real(intra / n));
		json_object_set_new(b, "wire_inter_per_rank", json_real(inter / n));
	}
	for (int r = 0; r < w->size; r++)
		free(texts[r]);
	for (int r = 0; r < n; r++)
		json_decref(reports[r]);
	free(texts);
	free(reports);
	return rc;
}

/* Ranks other than 0: run the cases rank 0 names, until it says stop. */
static void follow(struct moe_world *w, const struct moe_run_opts *o)
{
	for (;;) {
		int go = GO_STOP;
		bcast_go(w, &go); /* while rank 0 judges and writes the last case */
		if (go < 0 || go >= w->ncases)
			return;
		run_everywhere(w, &w->cases[go], o);
	}
}

/* auto backend and transport, the same on every rank: mpi for the host, nccl for GPUs */
static void resolve_auto_world(struct moe_world *w, struct moe_caselist *cases)
{
	int cuda = moe_backend_find("cuda") != NULL && w->placed[w->rank].gpu >= 0;
	MPI_Allreduce(MPI_IN_PLACE, &cuda, 1, MPI_INT, MPI_MIN, w->ctl);
	for (int i = 0; i < cases->n; i++) {
		struct moe_params *p = &cases->v[i].p;
		if (p->backend == MOE_BACKEND_AUTO)
			p->backend = cuda ? MOE_BACKEND_CUDA : MOE_BACKEND_HOST;
		if (p->transport == MOE_TRANSPORT_AUTO)
			p->transport = p->backend == MOE_BACKEND_HOST ? MOE_TRANSPORT_MPI : MOE_TRANSPORT_NCCL;
	}
}

int moe_world_run(int argc, char **argv, struct moe_run_opts *o, struct moe_caselist *cases, moe_run_fn run)
{
	struct moe_ext_env e;
	char err[256] = "";
	int d = moe_ext_detect(&e, err, sizeof(err)), rc;
	if (d == 0)
		return run(argc, argv, o, cases);
	if (d < 0) {
		fprintf(stderr, "moebench: external launch: %s\n", err);
		return MOE_EXIT_USAGE;
	}
	struct moe_world *w = moe_world_join(&e, o, &rc);
	if (!w)
		return rc;
	w->cases = cases->v;
	w->ncases = cases->n;
	resolve_auto_world(w, cases);
	moe_watchdog_start(w);
	if (w->rank == 0) {
		o->world = w;
		rc = run(argc, argv, o, cases);
		int stop = GO_STOP;
		bcast_go(w, &stop);
	} else {
		follow(w, o);
		rc = MOE_EXIT_OK;
	}
	moe_watchdog_stop(w);
	MPI_Comm_free(&w->ctl);
	MPI_Comm_free(&w->sup);
	MPI_Comm_free(&w->boot);
	MPI_Finalize();
	free(w->node_of);
	free(w->node_names);
	free(w->placed);
	free(w);
	return rc;
}

#endif
