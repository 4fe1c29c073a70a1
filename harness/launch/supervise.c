/* Supervising a case's ranks: serve their bootstrap all-gather and messages, reap them, and judge a
 * crash, a hang, a timeout or an interrupt. */
#include "launch_internal.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "moe.h"
#include "status.h"

void moe_launch_kill_all(struct rank_proc *rp, int n, pid_t pgid)
{
	int alive = 0;
	for (int i = 0; i < n; i++)
		alive |= rp[i].pid > 0 && !rp[i].exited;
	if (!alive)
		return; /* a reaped group's id may belong to someone else by now */
	if (pgid > 0)
		kill(-pgid, SIGKILL);
	for (int i = 0; i < n; i++)
		if (rp[i].pid > 0 && !rp[i].exited)
			kill(rp[i].pid, SIGKILL);
	for (int i = 0; i < n; i++)
		if (rp[i].pid > 0 && !rp[i].exited) {
			while (waitpid(rp[i].pid, &rp[i].wstatus, 0) < 0 && errno == EINTR)
				;
			rp[i].exited = 1;
		}
}

static void describe_exit(char *buf, size_t len, int rank, int wstatus, const char *phase, long long iter)
{
	if (WIFSIGNALED(wstatus))
		snprintf(buf, len, "rank %d was killed by signal %d (%s) in phase %s, iteration %lld", rank,
			 WTERMSIG(wstatus), strsignal(WTERMSIG(wstatus)), phase, iter);
	else
		snprintf(buf, len, "rank %d exited with status %d in phase %s, iteration %lld, before reporting", rank,
			 WEXITSTATUS(wstatus), phase, iter);
}

/* What an exited rank sent before dying: its result and its error, up to the end of the stream. */
static void drain(struct launch *L, int r)
{
	struct rank_proc *rp = &L->rp[r];
	while (rp->fd >= 0) {
		struct pollfd one = {rp->fd, POLLIN, 0};
		if (poll(&one, 1, 0) <= 0)
			break;
		uint32_t type;
		char *buf;
		size_t len;
		if (moe_msg_recv(rp->fd, &type, &buf, &len)) {
			close(rp->fd);
			rp->fd = -1;
			break;
		}
		if (type == MOE_MSG_RESULT && !rp->result) {
			rp->result = json_loads(buf, 0, NULL);
			L->reported++;
		} else if (type == MOE_MSG_ERROR)
			snprintf(rp->error, sizeof(rp->error), "%s", buf);
		free(buf);
	}
}

/* Judge a reaped rank: 0 when it exited as a rank that reported should, else the case fails with why. */
static int judge_exit(struct launch *L, int r)
{
	struct rank_proc *rp = &L->rp[r];
	int st2 = rp->wstatus, ph = atomic_load(&L->status->phase[r]);
	char *reason = L->reason;
	size_t len = sizeof(L->reason);
	if (rp->result) {
		/* a rank that reported exits with its verdict; a crash or another status on its
		 * way out (teardown, a sanitizer's leak check) fails the case all the same */
		if (WIFEXITED(st2) && (WEXITSTATUS(st2) == MOE_EXIT_OK || WEXITSTATUS(st2) == MOE_EXIT_FAIL))
			return 0;
		if (WIFSIGNALED(st2))
			snprintf(reason, len, "rank %d was killed by signal %d (%s) in phase %s, after reporting", r,
				 WTERMSIG(st2), strsignal(WTERMSIG(st2)), moe_phase_name(ph));
		else
			snprintf(reason, len, "rank %d exited with status %d in phase %s, after reporting", r,
				 WEXITSTATUS(st2), moe_phase_name(ph));
	} else if (WIFEXITED(st2) && WEXITSTATUS(st2) == MOE_EXIT_SKIP) {
		snprintf(reason, len, "rank %d: %s", r, rp->error);
		L->skip = 1;
	} else if (WIFEXITED(st2) && WEXITSTATUS(st2) == MOE_EXIT_USAGE) {
		snprintf(reason, len, "rank %d: %s", r, rp->error);
		L->usage = 1;
	} else {
		describe_exit(reason, len, r, st2, moe_phase_name(ph), (long long)atomic_load(&L->status->iter[r]));
		if (rp->error[0]) {
			size_t k = strlen(reason);
			snprintf(reason + k, len - k, ": %s", rp->error);
		}
	}
	return -1;
}

/* Reap what exited; a rank that exits before reporting fails the case. Sets L->failed. */
static void reap(struct launch *L)
{
	for (int r = 0; r < L->n; r++) {
		struct rank_proc *rp = &L->rp[r];
		if (rp->exited || rp->pid <= 0)
			continue;
		if (waitpid(rp->pid, &rp->wstatus, WNOHANG) == rp->pid) {
			rp->exited = 1;
			drain(L, r);
			if (!judge_exit(L, r))
				continue;
			L->failed = 1;
			return;
		}
	}
}

/* The bootstrap all-gather: once every rank sent its blob, every rank gets all of them in rank order. */
static void serve_allgather(struct launch *L)
{
	struct rank_proc *rp = L->rp;
	int n = L->n, ready = 1;
	for (int q = 0; q < n; q++)
		ready &= rp[q].has_gather;
	if (!ready)
		return;
	size_t len0 = rp[0].gather_len, tot = 0;
	for (int q = 0; q < n; q++)
		if (rp[q].gather_len != len0) {
			snprintf(L->reason, sizeof(L->reason), "bootstrap all-gather: rank %d sent %zu bytes, rank 0 %zu", q,
				 rp[q].gather_len, len0);
			L->failed = 1;
		}
	char *all = moe_xmalloc(len0 * (size_t)n + 1);
	for (int q = 0; q < n; q++) {
		memcpy(all + tot, rp[q].gather, len0);
		tot += len0;
		free(rp[q].gather);
		rp[q].gather = NULL;
		rp[q].has_gather = 0;
	}
	for (int q = 0; q < n && !L->failed; q++)
		moe_msg_send(rp[q].fd, MOE_MSG_ALLGATHER, all, tot);
	free(all);
}

/* One message from rank r: its result, error, a log line, or its part of the bootstrap all-gather. */
static void serve_message(struct launch *L, int r)
{
	struct rank_proc *rp = &L->rp[r];
	uint32_t type;
	char *buf;
	size_t len;
	if (moe_msg_recv(rp->fd, &type, &buf, &len)) {
		close(rp->fd); /* end of stream: the exit is judged once reaped */
		rp->fd = -1;
		return;
	}
	switch (type) {
	case MOE_MSG_RESULT:
		if (!rp->result) {
			rp->result = json_loads(buf, 0, NULL);
			L->reported++;
		}
		break;
	case MOE_MSG_ERROR: snprintf(rp->error, sizeof(rp->error), "%s", buf); break;
	case MOE_MSG_LOG: moe_warn("rank %d: %s", r, buf); break;
	case MOE_MSG_ALLGATHER:
		rp->gather = buf;
		rp->gather_len = len;
		rp->has_gather = 1;
		buf = NULL;
		break;
	default: moe_warn("rank %d sent an unknown message type %u", r, type);
	}
	free(buf);
	serve_allgather(L);
}

/* The timeout's reason: every rank that has not reported, with the phase and iteration it is in. A rank writes
 * its own slot of the status area; a slot holding no phase or an iteration past warm-up, timed and period
 * iterations is said to be unreadable (a rank that wrote out of bounds may have overwritten it) rather than
 * printed as if it meant something. */
static void describe_timeout(struct launch *L)
{
	size_t k = (size_t)snprintf(L->reason, sizeof(L->reason), "timed out after %.1f s:", L->p->timeout);
	long long most = (long long)L->p->warmup + 2ll * L->p->iters + 1;
	for (int r = 0; r < L->n && k < sizeof(L->reason); r++) {
		if (L->rp[r].result)
			continue;
		int ph = atomic_load(&L->status->phase[r]);
		long long it = (long long)atomic_load(&L->status->iter[r]);
		if (ph < 0 || ph >= MOE_PH_COUNT || it < 0 || it > most)
			k += (size_t)snprintf(L->reason + k, sizeof(L->reason) - k,
					      " rank %d: its status slot is unreadable (phase %d, iteration %lld: overwritten?);",
					      r, ph, it);
		else
			k += (size_t)snprintf(L->reason + k, sizeof(L->reason) - k, " rank %d in phase %s (iteration %lld);",
					      r, moe_phase_name(ph), it);
	}
}

/* The progress line on a terminal, at most four times a second: the slowest rank's phase and iteration, read
 * from the status area the ranks write as they go (nothing is sent for it). */
static void show_progress(const struct launch *L, double *last)
{
	double now = moe_now_us();
	if (!L->o->progress || now - *last < 250e3)
		return;
	*last = now;
	int slow = 0;
	for (int r = 1; r < L->n; r++)
		if (atomic_load(&L->status->iter[r]) < atomic_load(&L->status->iter[slow]))
			slow = r;
	int ph = atomic_load(&L->status->phase[slow]);
	long long it = atomic_load(&L->status->iter[slow]), warm = L->p->warmup, iters = L->p->iters;
	char where[96];
	if (ph <= MOE_PH_setup)
		snprintf(where, sizeof(where), "setting up");
	else if (ph >= MOE_PH_verify)
		snprintf(where, sizeof(where), "%s", moe_phase_name(ph));
	else if (it < warm)
		snprintf(where, sizeof(where), "warm-up %lld of %lld", it + 1, warm);
	else
		snprintf(where, sizeof(where), "iteration %lld of %lld", it - warm + 1, iters);
	fprintf(stderr, "\r%s: %s (slowest rank %d), %.0f s in this case\033[K", L->o->progress, where, slow,
		(now - L->t_start) * 1e-6);
}

/* Serve the ranks until every one exited, one failed, a signal arrived or the case timed out. */
void moe_launch_supervise(struct launch *L)
{
	int n = L->n;
	double deadline = L->t_start + L->p->timeout * 1e6;
	struct pollfd *pf = moe_xcalloc((size_t)n, sizeof(*pf));
	double shown = 0;
	while (!L->failed) {
		show_progress(L, &shown);
		int live = 0;
		for (int r = 0; r < n; r++) {
			pf[r].fd = L->rp[r].fd;
			pf[r].events = POLLIN;
			pf[r].revents = 0;
			live += L->rp[r].fd >= 0;
		}
		reap(L);
		if (L->failed)
			break;
		int all_done = 1;
		for (int r = 0; r < n; r++)
			all_done &= L->rp[r].exited;
		if (all_done)
			break;
		if (moe_interrupted) {
			snprintf(L->reason, sizeof(L->reason), "interrupted (signal) while running");
			L->failed = 1;
			break;
		}
		if (moe_now_us() > deadline) {
			describe_timeout(L);
			L->failed = 1;
			break;
		}
		if (!live) {
			usleep(2000);
			continue;
		}
		int pr = poll(pf, (nfds_t)n, 20);
		if (pr < 0 && errno != EINTR) {
			snprintf(L->reason, sizeof(L->reason), "poll: %s", strerror(errno));
			L->failed = 1;
			break;
		}
		for (int r = 0; r < n && pr > 0; r++)
			if ((pf[r].revents & (POLLIN | POLLHUP | POLLERR)) && L->rp[r].fd >= 0)
				serve_message(L, r);
	}
	free(pf);
}
