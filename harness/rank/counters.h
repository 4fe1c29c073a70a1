/* Hardware/software counters through PAPI, per phase; degrades to "unavailable" without failing a run. */
#ifndef MOE_COUNTERS_H
#define MOE_COUNTERS_H

#define MOE_MAX_EVENTS 4

struct moe_counters {
	int available; /* events were counted (stays set after stop, for the report) */
	int running;   /* counting now: between a successful start and stop */
	int eventset;
	int nevents;
	char names[MOE_MAX_EVENTS][64];
	long long last[MOE_MAX_EVENTS];
	char why[256]; /* when unavailable, or which events were dropped */
};

/* Try events from the MOEBENCH_PAPI_EVENTS list (comma-separated) or a default list; keep what works. */
void moe_counters_start(struct moe_counters *c);
/* Values since the previous call (0s when unavailable). */
void moe_counters_delta(struct moe_counters *c, long long *out);
/* Stop counting and release PAPI's event set and library state (names and why stay). */
void moe_counters_stop(struct moe_counters *c);

#endif
