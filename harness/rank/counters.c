/* PAPI counters: add what the machine supports, record what was used and why the rest was not. */
#include "counters.h"

#include <papi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *default_events = "PAPI_TOT_INS,PAPI_TOT_CYC,perf::TASK-CLOCK";

void moe_counters_start(struct moe_counters *c)
{
	memset(c, 0, sizeof(*c));
	c->eventset = PAPI_NULL;
	int rc = PAPI_library_init(PAPI_VER_CURRENT);
	if (rc != PAPI_VER_CURRENT) {
		snprintf(c->why, sizeof(c->why), "PAPI_library_init: %s", rc < 0 ? PAPI_strerror(rc) : "version mismatch");
		return;
	}
	if ((rc = PAPI_create_eventset(&c->eventset)) != PAPI_OK) {
		snprintf(c->why, sizeof(c->why), "PAPI_create_eventset: %s", PAPI_strerror(rc));
		return;
	}
	const char *env = getenv("MOEBENCH_PAPI_EVENTS");
	char list[512];
	snprintf(list, sizeof(list), "%s", env && *env ? env : default_events);
	size_t wn = 0;
	for (char *save = NULL, *ev = strtok_r(list, ",", &save); ev && c->nevents < MOE_MAX_EVENTS;
	     ev = strtok_r(NULL, ",", &save)) {
		rc = PAPI_add_named_event(c->eventset, ev);
		if (rc == PAPI_OK)
			snprintf(c->names[c->nevents++], sizeof(c->names[0]), "%s", ev);
		else if (wn < sizeof(c->why))
			wn += (size_t)snprintf(c->why + wn, sizeof(c->why) - wn, "%s%s: %s", wn ? "; " : "", ev,
					       PAPI_strerror(rc));
	}
	if (!c->nevents)
		return;
	if ((rc = PAPI_start(c->eventset)) != PAPI_OK) {
		snprintf(c->why, sizeof(c->why), "PAPI_start: %s", PAPI_strerror(rc));
		c->nevents = 0;
		return;
	}
	c->available = 1;
	c->running = 1;
}

void moe_counters_delta(struct moe_counters *c, long long *out)
{
	long long v[MOE_MAX_EVENTS] = {0};
	memset(out, 0, sizeof(long long) * MOE_MAX_EVENTS); /* entries past the events in use stay zero */
	if (!c->running || PAPI_read(c->eventset, v) != PAPI_OK)
		return;
	for (int i = 0; i < c->nevents; i++) {
		out[i] = v[i] - c->last[i];
		c->last[i] = v[i];
	}
}

void moe_counters_stop(struct moe_counters *c)
{
	long long v[MOE_MAX_EVENTS];
	if (c->running)
		PAPI_stop(c->eventset, v);
	c->running = 0;
	/* the names and deltas stay; PAPI's event set and library state go */
	if (c->eventset != PAPI_NULL) {
		PAPI_cleanup_eventset(c->eventset);
		PAPI_destroy_eventset(&c->eventset);
	}
	if (PAPI_is_initialized())
		PAPI_shutdown();
}
