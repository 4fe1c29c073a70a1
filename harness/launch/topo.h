/* Topology discovery (hwloc) and the rank placement plan: rank -> GPU, cpuset, NUMA node. */
#ifndef MOE_TOPO_H
#define MOE_TOPO_H

#include <hwloc.h>
#include <stdio.h>

enum moe_bind {
	MOE_BIND_AUTO, /* gpu when the machine has NVIDIA GPUs, else core */
	MOE_BIND_NONE, /* no pinning at all */
	MOE_BIND_CORE, /* ranks spread over cores (and NUMA nodes), one disjoint core set each */
	MOE_BIND_NUMA, /* each rank bound to a whole NUMA node, round robin over nodes */
	MOE_BIND_GPU,  /* each rank bound near its GPU (cores of the GPU's locality, split among the ranks sharing it) */
};

struct moe_gpu_info {
	char pci_busid[32]; /* "0000:3b:00.0" */
	int numa_node;      /* -1 if unknown */
	char cpuset[256];   /* list form "0-15" of the locality's CPUs */
};

struct moe_rank_place {
	int rank;
	int gpu;            /* index in PCI bus id order, -1 when none */
	char pci_busid[32]; /* "" when none */
	int numa_node;      /* -1 when unbound or unknown */
	hwloc_bitmap_t cpuset; /* NULL when not bound */
	char cpuset_str[256];  /* list form ("0-3,8"), "all" when not bound */
};

struct moe_plan {
	enum moe_bind bind; /* the mode actually used (AUTO resolved) */
	int nranks;
	int ngpus;
	struct moe_gpu_info *gpus; /* ngpus entries */
	struct moe_rank_place *ranks; /* nranks entries */
};

/* Parse "auto|none|core|numa|gpu"; returns -1 on an unknown word. */
int moe_bind_parse(const char *s, enum moe_bind *out);
const char *moe_bind_name(enum moe_bind b);

/* Load the machine's topology with PCI devices kept (no CUDA is touched).
 * xml_path: when not NULL, load that hwloc XML file instead (tests, offline plans).
 * Returns 0 or -1 with the reason in errbuf. */
int moe_topo_load(hwloc_topology_t *topo, const char *xml_path, char *errbuf, size_t errlen);

/* Build the placement plan for nranks. GPU mode on a machine with no GPU falls back to core
 * mode (plan->bind says so). Ranks beyond the GPU count share GPUs: rank r -> GPU r % ngpus.
 * Returns 0 or -1 with the reason in errbuf. */
int moe_plan_build(hwloc_topology_t topo, int nranks, enum moe_bind bind, struct moe_plan *plan,
		   char *errbuf, size_t errlen);
void moe_plan_free(struct moe_plan *plan);

/* Apply rank r's placement to the calling process (cpu binding and memory binding to its
 * NUMA node); called in the child between fork and exec. Returns 0 or -1 with errno-like reason. */
int moe_plan_apply(hwloc_topology_t topo, const struct moe_plan *plan, int rank, char *errbuf, size_t errlen);

/* Human-readable plan, for `moebench topo` and the run header. */
void moe_plan_print(FILE *f, hwloc_topology_t topo, const struct moe_plan *plan);

#endif
