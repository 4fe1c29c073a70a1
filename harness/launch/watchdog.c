/* Supervision under an external launch: a thread per rank watches the case deadline and a crash handed
 * over by the fatal-signal handler, and tells rank 0, which records the case as failed (rank, node, phase),
 * writes the results and ends the job through the engine (MPI_Abort: mpirun or srun kill every rank). */
#ifdef MOE_HAVE_MPI
#include <errno.h>
#include <execinfo.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "moe.h"
#include "mpi_iface.h"
#include "results.h"
#include "world_impl.h"

enum { TAG_FATAL = 1, TAG_TIMEOUT = 2, NOTE_MAX = 2048 };

static volatile sig_atomic_t crash_sig;

/* A fatal signal on this rank: hand over to the watchdog thread (it still runs) and wait to be ended. */
static void on_fatal(int sig)
{
	crash_sig = sig;
	void *frames[32];
	backtrace_symbols_fd(frames, backtrace(frames, 32), STDERR_FILENO);
	for (int i = 0; i < 1000; i++) {
		struct timespec ts = {0, 10 * 1000 * 1000};
		nanosleep(&ts, NULL);
	}
	static const char msg[] = "moebench: a rank crashed and rank 0 did not end the job within 10 s\n";
	ssize_t k = write(STDERR_FILENO, msg, sizeof(msg) - 1);
	(void)k;
	_exit(MOE_EXIT_RANK);
}

static void where(struct moe_world *w, char *buf, size_t len)
{
	struct moe_status_area *st = w->status; /* NULL between this rank's shares of the cases */
	int ph = st ? atomic_load(&st->phase[w->rank]) : MOE_PH_start;
	long long it = st ? (long long)atomic_load(&st->iter[w->rank]) : 0;
	snprintf(buf, len, "rank %d on %s in phase %s (iteration %lld%s)", w->rank, w->node_names[w->node_of[w->rank]],
		 moe_phase_name(ph), it,
		 __atomic_load_n(&moe_mpi_case.in_collective, __ATOMIC_RELAXED) ? ", waiting in an MPI collective" : "");
}

void moe_world_fail(struct moe_world *w, const char *reason)
{
	pthread_mutex_lock(&w->lock);
	const char *name = w->c ? w->c->name : "?";
	if (w->run && w->c && w->active) {
		int n = w->n_case;
		struct moe_gathered g = {.reports = moe_xcalloc((size_t)n, sizeof(json_t *)), .outcome = MOE_EXIT_RANK,
					 .reason = reason};
		struct moe_run_opts o = w->opts;
		struct moe_plan plan = {0};
		json_t *cj = NULL;
		o.gathered = &g;
		moe_world_plan(w, n, &plan);
		moe_launch_case(w->c, NULL, &plan, &o, NULL, &cj);
		json_t *pj = json_array(); /* what run_cases adds to every case it records */
		for (int r = 0; r < n; r++)
			json_array_append_new(pj, json_pack("{s:i,s:i,s:s,s:i}", "rank", r, "gpu", plan.ranks[r].gpu, "cpuset",
							    plan.ranks[r].cpuset_str, "numa", plan.ranks[r].numa_node));
		json_object_set_new(cj, "placement", json_pack("{s:s,s:o}", "bind", moe_bind_name(plan.bind), "ranks", pj));
		moe_plan_free(&plan);
		json_array_append_new(json_object_get(w->run, "cases"), cj);
		char werr[1200];
		if (moe_results_write(w->dir, w->run, werr, sizeof(werr)))
			fprintf(stderr, "moebench: results NOT saved: %s\n", werr);
	}
	fprintf(stderr, "moebench: case %s: %s; ending the job\n", name, reason);
	fflush(stderr);
	MPI_Abort(MPI_COMM_WORLD, MOE_EXIT_RANK);
	_exit(MOE_EXIT_RANK);
}

void moe_watchdog_notify(struct moe_world *w, const char *why)
{
	if (w->rank == 0)
		moe_world_fail(w, why);
	MPI_Send(why, (int)strlen(why) + 1, MPI_CHAR, 0, TAG_FATAL, w->sup);
}

/* rank 0: every rank that timed out says where it is; wait a moment for all of them, then fail the case. */
static void timeouts(struct moe_world *w, char *first, MPI_Request *req, char *buf)
{
	size_t cap = (size_t)w->size * 160 + 256, k;
	char *all = moe_xmalloc(cap);
	k = (size_t)snprintf(all, cap, "timed out after %.1f s: %s", w->timeout_s, first);
	double until = moe_now_us() + 1e6;
	int got = 1;
	while (got < w->n_case && moe_now_us() < until) {
		int done = 0;
		MPI_Status st;
		MPI_Test(req, &done, &st);
		if (!done) {
			usleep(10000);
			continue;
		}
		if (st.MPI_TAG == TAG_FATAL)
			moe_world_fail(w, buf);
		if (k < cap)
			k += (size_t)snprintf(all + k, cap - k, "; %s", buf);
		got++;
		MPI_Irecv(buf, NOTE_MAX, MPI_CHAR, MPI_ANY_SOURCE, MPI_ANY_TAG, w->sup, req);
	}
	moe_world_fail(w, all);
}

static void *watchdog_main(void *arg)
{
	struct moe_world *w = arg;
	char buf[NOTE_MAX], note[NOTE_MAX];
	int sent_crash = 0, sent_timeout = 0;
	MPI_Request req = MPI_REQUEST_NULL;
	if (w->rank == 0)
		MPI_Irecv(buf, NOTE_MAX, MPI_CHAR, MPI_ANY_SOURCE, MPI_ANY_TAG, w->sup, &req);
	while (!atomic_load(&w->stop)) {
		if (crash_sig && !sent_crash) {
			char at[512];
			where(w, at, sizeof(at));
			snprintf(note, sizeof(note), "%s was killed by signal %d (%s)", at, (int)crash_sig,
				 strsignal(crash_sig));
			sent_crash = 1;
			moe_watchdog_notify(w, note);
		}
		pthread_mutex_lock(&w->lock);
		int late = w->active && moe_now_us() > w->deadline_us && !sent_timeout;
		if (!w->active)
			sent_timeout = 0;
		if (late)
			where(w, note, sizeof(note));
		pthread_mutex_unlock(&w->lock);
		if (late) {
			sent_timeout = 1;
			if (w->rank == 0)
				timeouts(w, note, &req, buf);
			MPI_Send(note, (int)strlen(note) + 1, MPI_CHAR, 0, TAG_TIMEOUT, w->sup);
		}
		if (w->rank == 0) {
			int done = 0;
			MPI_Status st;
			MPI_Test(&req, &done, &st);
			if (done && st.MPI_TAG == TAG_FATAL)
				moe_world_fail(w, buf);
			if (done) {
				memcpy(note, buf, sizeof(note));
				MPI_Irecv(buf, NOTE_MAX, MPI_CHAR, MPI_ANY_SOURCE, MPI_ANY_TAG, w->sup, &req);
				timeouts(w, note, &req, buf);
			}
		}
		usleep(20000);
	}
	if (req != MPI_REQUEST_NULL) {
		MPI_Cancel(&req);
		MPI_Wait(&req, MPI_STATUS_IGNORE);
	}
	return NULL;
}

int moe_watchdog_start(struct moe_world *w)
{
	struct sigaction sa = {.sa_handler = on_fatal};
	sigemptyset(&sa.sa_mask);
	static const int fatal[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT};
	for (size_t i = 0; i < MOE_ARRAY_SIZE(fatal); i++)
		sigaction(fatal[i], &sa, NULL);
	if (pthread_create(&w->watchdog, NULL, watchdog_main, w))
		return -1;
	w->watchdog_started = 1;
	return 0;
}

void moe_watchdog_stop(struct moe_world *w)
{
	if (!w->watchdog_started)
		return;
	atomic_store(&w->stop, 1);
	pthread_join(w->watchdog, NULL);
	w->watchdog_started = 0;
}
#endif
