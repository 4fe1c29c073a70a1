/* Topology discovery with hwloc and the rank placement plan (rank -> GPU, cpuset, NUMA node). */
#include "topo.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#define MOE_PCI_VENDOR_NVIDIA 0x10de
#define MOE_PCI_CLASS_VGA 0x0300
#define MOE_PCI_CLASS_3D 0x0302

static const char *const bind_names[] = {
	[MOE_BIND_AUTO] = "auto", [MOE_BIND_NONE] = "none", [MOE_BIND_CORE] = "core",
	[MOE_BIND_NUMA] = "numa", [MOE_BIND_GPU] = "gpu",
};

__attribute__((format(printf, 3, 4))) static void set_err(char *errbuf, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (!errbuf || !errlen)
		return;
	va_start(ap, fmt);
	vsnprintf(errbuf, errlen, fmt, ap);
	va_end(ap);
}

int moe_bind_parse(const char *s, enum moe_bind *out)
{
	for (size_t i = 0; s && i < sizeof(bind_names) / sizeof(bind_names[0]); i++) {
		if (strcmp(s, bind_names[i]) == 0) {
			*out = (enum moe_bind)i;
			return 0;
		}
	}
	return -1;
}

const char *moe_bind_name(enum moe_bind b)
{
	if ((unsigned)b < sizeof(bind_names) / sizeof(bind_names[0]))
		return bind_names[b];
	return "?";
}

int moe_topo_load(hwloc_topology_t *topo, const char *xml_path, char *errbuf, size_t errlen)
{
	hwloc_topology_t t;

	*topo = NULL;
	if (hwloc_topology_init(&t) < 0) {
		set_err(errbuf, errlen, "hwloc_topology_init: %s", strerror(errno));
		return -1;
	}
	/* I/O objects are filtered out by default; GPUs are found as PCI devices, so keep the
	 * important ones (displays, 3D controllers, NICs) and the bridges leading to them. */
	if (hwloc_topology_set_io_types_filter(t, HWLOC_TYPE_FILTER_KEEP_IMPORTANT) < 0) {
		set_err(errbuf, errlen, "hwloc_topology_set_io_types_filter: %s", strerror(errno));
		goto fail;
	}
	/* Plugins that ask GPU drivers would initialise them in the launcher before it forks the
	 * ranks (OpenCL loads the NVIDIA ICD); PCI ids already tell us all we need. hwloc
	 * answers EINVAL for a component this build lacks, which is just as good. */
	static const char *const driver_components[] = {"opencl", "cuda", "nvml", "rsmi", "levelzero", "gl"};
	for (size_t i = 0; i < sizeof(driver_components) / sizeof(driver_components[0]); i++)
		(void)hwloc_topology_set_components(t, HWLOC_TOPOLOGY_COMPONENTS_FLAG_BLACKLIST, driver_components[i]);
	if (xml_path) {
		/* hwloc only reads the file at load time; check it first so the reason names it. */
		FILE *f = fopen(xml_path, "r");
		if (!f) {
			set_err(errbuf, errlen, "topology XML %s: %s", xml_path, strerror(errno));
			goto fail;
		}
		fclose(f);
		if (hwloc_topology_set_xml(t, xml_path) < 0) {
			set_err(errbuf, errlen, "hwloc_topology_set_xml(%s): %s", xml_path, strerror(errno));
			goto fail;
		}
	}
	if (hwloc_topology_load(t) < 0) {
		if (xml_path)
			set_err(errbuf, errlen, "hwloc_topology_load(%s): %s", xml_path, strerror(errno));
		else
			set_err(errbuf, errlen, "hwloc_topology_load: %s", strerror(errno));
		goto fail;
	}
	*topo = t;
	return 0;
fail:
	hwloc_topology_destroy(t);
	return -1;
}

static int is_nvidia_gpu(hwloc_obj_t o)
{
	unsigned cls = o->attr->pcidev.class_id;

	return o->attr->pcidev.vendor_id == MOE_PCI_VENDOR_NVIDIA &&
	       (cls == MOE_PCI_CLASS_VGA || cls == MOE_PCI_CLASS_3D);
}

/* CUDA_DEVICE_ORDER=PCI_BUS_ID numbers devices in this order, so our GPU index is CUDA's. */
static int cmp_busid(const void *a, const void *b)
{
	const struct hwloc_pcidev_attr_s *x = &(*(const hwloc_obj_t *)a)->attr->pcidev;
	const struct hwloc_pcidev_attr_s *y = &(*(const hwloc_obj_t *)b)->attr->pcidev;

	if (x->domain != y->domain)
		return x->domain < y->domain ? -1 : 1;
	if (x->bus != y->bus)
		return x->bus < y->bus ? -1 : 1;
	if (x->dev != y->dev)
		return x->dev < y->dev ? -1 : 1;
	if (x->func != y->func)
		return x->func < y->func ? -1 : 1;
	return 0;
}

static int find_gpus(hwloc_topology_t topo, hwloc_obj_t **out)
{
	hwloc_obj_t o = NULL;
	int n = 0;

	*out = NULL;
	while ((o = hwloc_get_next_pcidev(topo, o)))
		n += is_nvidia_gpu(o);
	if (!n)
		return 0;
	*out = calloc((size_t)n, sizeof(**out));
	if (!*out)
		return -1;
	n = 0;
	while ((o = hwloc_get_next_pcidev(topo, o)))
		if (is_nvidia_gpu(o))
			(*out)[n++] = o;
	qsort(*out, (size_t)n, sizeof(**out), cmp_busid);
	return n;
}

/* A GPU's locality is the CPU set of the first normal object above its PCI device; when
 * hwloc could not tell (no locality in sysfs), that is the whole machine. */
static hwloc_const_cpuset_t gpu_locality(hwloc_topology_t topo, hwloc_obj_t pcidev)
{
	hwloc_obj_t anc = hwloc_get_non_io_ancestor_obj(topo, pcidev);
	hwloc_const_cpuset_t set = anc ? anc->cpuset : NULL;

	if (!set || hwloc_bitmap_iszero(set))
		set = hwloc_topology_get_topology_cpuset(topo);
	return set;
}

/* The NUMA node (OS index) whose CPUs include all of set. A set that spans nodes gets -1:
 * binding its memory to any one node would be a guess, and first touch does better. */
static int numa_of_cpuset(hwloc_topology_t topo, hwloc_const_cpuset_t set)
{
	hwloc_obj_t node = NULL;

	if (!set || hwloc_bitmap_iszero(set))
		return -1;
	while ((node = hwloc_get_next_obj_by_type(topo, HWLOC_OBJ_NUMANODE, node)))
		if (node->cpuset && !hwloc_bitmap_iszero(node->cpuset) &&
		    hwloc_bitmap_isincluded(set, node->cpuset))
			return (int)node->os_index;
	return -1;
}

/* Ranks are given whole cores; a topology without Core objects falls back to PUs. */
static hwloc_obj_type_t unit_type(hwloc_topology_t topo)
{
	return hwloc_get_nbobjs_by_type(topo, HWLOC_OBJ_CORE) > 0 ? HWLOC_OBJ_CORE : HWLOC_OBJ_PU;
}

/* Share `count` consumers out over the units inside set: consumer i of count gets a
 * contiguous, disjoint range of units when there are enough, else unit i % nunits. */
static hwloc_bitmap_t split_units(hwloc_topology_t topo, hwloc_const_cpuset_t set, int i, int count)
{
	hwloc_obj_type_t type = unit_type(topo);
	int nunits = hwloc_get_nbobjs_inside_cpuset_by_type(topo, set, type);
	hwloc_bitmap_t out;

	if (nunits <= 0)
		return hwloc_bitmap_dup(set);
	out = hwloc_bitmap_alloc();
	if (!out)
		return NULL;
	if (count > nunits) {
		hwloc_obj_t u = hwloc_get_obj_inside_cpuset_by_type(topo, set, type, (unsigned)(i % nunits));
		hwloc_bitmap_copy(out, u->cpuset);
		return out;
	}
	int lo = (int)((long)i * nunits / count), hi = (int)((long)(i + 1) * nunits / count);
	for (int k = lo; k < hi; k++) {
		hwloc_obj_t u = hwloc_get_obj_inside_cpuset_by_type(topo, set, type, (unsigned)k);
		hwloc_bitmap_or(out, out, u->cpuset);
	}
	return out;
}

static int pairwise_disjoint(struct moe_plan *plan)
{
	for (int a = 0; a < plan->nranks; a++)
		for (int b = a + 1; b < plan->nranks; b++)
			if (hwloc_bitmap_intersects(plan->ranks[a].cpuset, plan->ranks[b].cpuset))
				return 0;
	return 1;
}

static int place_core(hwloc_topology_t topo, struct moe_plan *plan)
{
	hwloc_obj_t root = hwloc_get_root_obj(topo);
	hwloc_obj_type_t type = unit_type(topo);
	int nunits = hwloc_get_nbobjs_by_type(topo, type);
	int n = plan->nranks;
	hwloc_bitmap_t *sets;

	if (n > nunits) {
		for (int r = 0; r < n; r++) {
			plan->ranks[r].cpuset = hwloc_bitmap_dup(hwloc_get_obj_by_type(topo, type, (unsigned)(r % nunits))->cpuset);
			if (!plan->ranks[r].cpuset)
				return -1;
		}
		return 0;
	}
	/* hwloc_distrib follows the tree, so ranks land on separate packages and NUMA nodes
	 * before they share one. */
	sets = calloc((size_t)n, sizeof(*sets));
	if (!sets)
		return -1;
	if (hwloc_distrib(topo, &root, 1, sets, (unsigned)n, hwloc_get_type_depth(topo, type), 0) < 0) {
		free(sets);
		return -1;
	}
	for (int r = 0; r < n; r++)
		plan->ranks[r].cpuset = sets[r];
	free(sets);
	for (int r = 0; r < n; r++)
		if (!plan->ranks[r].cpuset)
			return -1;
	/* distrib weighs subtrees by PU count, so uneven SMT can hand one subtree more ranks
	 * than cores; then a plain split of the core list keeps the promise of disjoint sets. */
	if (!pairwise_disjoint(plan)) {
		for (int r = 0; r < n; r++) {
			hwloc_bitmap_free(plan->ranks[r].cpuset);
			plan->ranks[r].cpuset = split_units(topo, root->cpuset, r, n);
			if (!plan->ranks[r].cpuset)
				return -1;
		}
	}
	return 0;
}

static int place_numa(hwloc_topology_t topo, struct moe_plan *plan)
{
	int nnodes = hwloc_get_nbobjs_by_type(topo, HWLOC_OBJ_NUMANODE);
	hwloc_obj_t *nodes = calloc((size_t)(nnodes > 0 ? nnodes : 1), sizeof(*nodes));
	hwloc_obj_t node = NULL;
	int n = 0;

	if (!nodes)
		return -1;
	/* Memory-only nodes (HBM, CXL, GPU memory) have no CPUs to bind a rank to. */
	while ((node = hwloc_get_next_obj_by_type(topo, HWLOC_OBJ_NUMANODE, node)))
		if (node->cpuset && !hwloc_bitmap_iszero(node->cpuset))
			nodes[n++] = node;
	if (!n) {
		free(nodes);
		errno = ENODEV;
		return -1;
	}
	for (int r = 0; r < plan->nranks; r++) {
		node = nodes[r % n];
		plan->ranks[r].cpuset = hwloc_bitmap_dup(node->cpuset);
		plan->ranks[r].numa_node = (int)node->os_index;
		if (!plan->ranks[r].cpuset) {
			free(nodes);
			return -1;
		}
	}
	free(nodes);
	return 0;
}

/* Ranks whose GPUs hang off the same locality (two GPUs under one package) split its cores
 * between them all, so no two ranks share a core while cores are left over. */
static int place_gpu(hwloc_topology_t topo, struct moe_plan *plan, hwloc_obj_t *gpus)
{
	int ng = plan->ngpus;

	for (int r = 0; r < plan->nranks; r++) {
		hwloc_const_cpuset_t loc = gpu_locality(topo, gpus[r % ng]);
		int index = 0, sharing = 0;

		for (int q = 0; q < plan->nranks; q++) {
			if (!hwloc_bitmap_isequal(gpu_locality(topo, gpus[q % ng]), loc))
				continue;
			index += q < r;
			sharing++;
		}
		plan->ranks[r].cpuset = split_units(topo, loc, index, sharing);
		if (!plan->ranks[r].cpuset)
			return -1;
		plan->ranks[r].numa_node = plan->gpus[r % ng].numa_node;
		if (plan->ranks[r].numa_node < 0)
			plan->ranks[r].numa_node = numa_of_cpuset(topo, plan->ranks[r].cpuset);
	}
	return 0;
}

int moe_plan_build(hwloc_topology_t topo, int nranks, enum moe_bind bind, struct moe_plan *plan,
		   char *errbuf, size_t errlen)
{
	hwloc_obj_t *gpus = NULL;
	int rc = 0;

	memset(plan, 0, sizeof(*plan));
	if (nranks <= 0) {
		set_err(errbuf, errlen, "plan: need at least one rank (got %d)", nranks);
		return -1;
	}
	if ((unsigned)bind >= sizeof(bind_names) / sizeof(bind_names[0])) {
		set_err(errbuf, errlen, "plan: unknown bind mode %d", (int)bind);
		return -1;
	}
	plan->ngpus = find_gpus(topo, &gpus);
	if (plan->ngpus < 0) {
		plan->ngpus = 0;
		set_err(errbuf, errlen, "plan: out of memory listing GPUs");
		return -1;
	}
	if (bind == MOE_BIND_AUTO || (bind == MOE_BIND_GPU && plan->ngpus == 0))
		bind = plan->ngpus > 0 ? MOE_BIND_GPU : MOE_BIND_CORE;
	plan->bind = bind;
	plan->nranks = nranks;
	plan->ranks = calloc((size_t)nranks, sizeof(*plan->ranks));
	plan->gpus = calloc((size_t)(plan->ngpus > 0 ? plan->ngpus : 1), sizeof(*plan->gpus));
	if (!plan->ranks || !plan->gpus) {
		set_err(errbuf, errlen, "plan: out of memory for %d ranks", nranks);
		goto fail;
	}

	for (int g = 0; g < plan->ngpus; g++) {
		struct hwloc_pcidev_attr_s *pci = &gpus[g]->attr->pcidev;
		hwloc_const_cpuset_t loc = gpu_locality(topo, gpus[g]);

		snprintf(plan->gpus[g].pci_busid, sizeof(plan->gpus[g].pci_busid), "%04x:%02x:%02x.%01x",
			 (unsigned)pci->domain, pci->bus, pci->dev, pci->func);
		plan->gpus[g].numa_node = numa_of_cpuset(topo, loc);
		hwloc_bitmap_list_snprintf(plan->gpus[g].cpuset, sizeof(plan->gpus[g].cpuset), loc);
	}
	/* The GPU a rank drives does not depend on how it is pinned. */
	for (int r = 0; r < nranks; r++) {
		struct moe_rank_place *p = &plan->ranks[r];

		p->rank = r;
		p->gpu = plan->ngpus > 0 ? r % plan->ngpus : -1;
		if (p->gpu >= 0)
			memcpy(p->pci_busid, plan->gpus[p->gpu].pci_busid, sizeof(p->pci_busid));
		p->numa_node = -1;
	}

	errno = 0;
	switch (bind) {
	case MOE_BIND_CORE:
		rc = place_core(topo, plan);
		for (int r = 0; rc == 0 && r < nranks; r++)
			plan->ranks[r].numa_node = numa_of_cpuset(topo, plan->ranks[r].cpuset);
		break;
	case MOE_BIND_NUMA:
		rc = place_numa(topo, plan);
		break;
	case MOE_BIND_GPU:
		rc = place_gpu(topo, plan, gpus);
		break;
	default:
		break;
	}
	if (rc < 0) {
		set_err(errbuf, errlen, "plan: placing %d ranks in %s mode: %s", nranks, moe_bind_name(bind),
			errno ? strerror(errno) : "failed");
		goto fail;
	}
	for (int r = 0; r < nranks; r++) {
		struct moe_rank_place *p = &plan->ranks[r];

		if (p->cpuset)
			hwloc_bitmap_list_snprintf(p->cpuset_str, sizeof(p->cpuset_str), p->cpuset);
		else
			snprintf(p->cpuset_str, sizeof(p->cpuset_str), "all");
	}
	free(gpus);
	return 0;
fail:
	free(gpus);
	moe_plan_free(plan);
	return -1;
}

void moe_plan_free(struct moe_plan *plan)
{
	if (!plan)
		return;
	for (int r = 0; plan->ranks && r < plan->nranks; r++)
		hwloc_bitmap_free(plan->ranks[r].cpuset);
	free(plan->ranks);
	free(plan->gpus);
	memset(plan, 0, sizeof(*plan));
}

int moe_plan_apply(hwloc_topology_t topo, const struct moe_plan *plan, int rank, char *errbuf, size_t errlen)
{
	const struct moe_rank_place *p;
	hwloc_obj_t node;

	if (errbuf && errlen)
		errbuf[0] = '\0';
	if (rank < 0 || rank >= plan->nranks) {
		set_err(errbuf, errlen, "plan: rank %d out of range (%d ranks)", rank, plan->nranks);
		return -1;
	}
	p = &plan->ranks[rank];
	if (plan->bind == MOE_BIND_NONE || !p->cpuset)
		return 0;
	if (hwloc_set_cpubind(topo, p->cpuset, HWLOC_CPUBIND_PROCESS) < 0) {
		set_err(errbuf, errlen, "hwloc_set_cpubind(cpuset %s): %s", p->cpuset_str, strerror(errno));
		return -1;
	}
	if (p->numa_node < 0)
		return 0;
	node = hwloc_get_numanode_obj_by_os_index(topo, (unsigned)p->numa_node);
	if (!node) {
		set_err(errbuf, errlen, "plan: NUMA node %d not in this topology", p->numa_node);
		return -1;
	}
	/* Linux has no process-wide memory policy, so hwloc answers ENOSYS to MEMBIND_PROCESS.
	 * The thread policy is what set_mempolicy sets; called in the single-threaded child
	 * between fork and exec it is the whole process's, and exec keeps it. */
	if (hwloc_set_membind(topo, node->nodeset, HWLOC_MEMBIND_BIND,
			      HWLOC_MEMBIND_THREAD | HWLOC_MEMBIND_BYNODESET) < 0) {
		int e = errno;
		/* VMs and containers often lack NUMA policy support (or the seccomp default
		 * denies set_mempolicy); CPU binding alone still gives a usable run. */
		if (e == ENOSYS || e == EXDEV || e == EPERM) {
			set_err(errbuf, errlen, "note: memory binding to NUMA node %d not available: %s",
				p->numa_node, strerror(e));
			return 0;
		}
		set_err(errbuf, errlen, "hwloc_set_membind(NUMA node %d): %s", p->numa_node, strerror(e));
		return -1;
	}
	return 0;
}

void moe_plan_print(FILE *f, hwloc_topology_t topo, const struct moe_plan *plan)
{
	fprintf(f, "machine: %d packages, %d NUMA nodes, %d cores, %d PUs\n",
		hwloc_get_nbobjs_by_type(topo, HWLOC_OBJ_PACKAGE), hwloc_get_nbobjs_by_type(topo, HWLOC_OBJ_NUMANODE),
		hwloc_get_nbobjs_by_type(topo, HWLOC_OBJ_CORE), hwloc_get_nbobjs_by_type(topo, HWLOC_OBJ_PU));
	fprintf(f, "plan: bind %s, %d ranks, %d GPUs\n", moe_bind_name(plan->bind), plan->nranks, plan->ngpus);
	for (int g = 0; g < plan->ngpus; g++) {
		const struct moe_gpu_info *gi = &plan->gpus[g];
		char numa[16] = "-";

		if (gi->numa_node >= 0)
			snprintf(numa, sizeof(numa), "%d", gi->numa_node);
		fprintf(f, "  gpu %-3d pci %-13s numa %-3s cpus %s\n", g, gi->pci_busid, numa, gi->cpuset);
	}
	for (int r = 0; r < plan->nranks; r++) {
		const struct moe_rank_place *p = &plan->ranks[r];
		char gpu[16] = "-", numa[16] = "-";

		if (p->gpu >= 0)
			snprintf(gpu, sizeof(gpu), "%d", p->gpu);
		if (p->numa_node >= 0)
			snprintf(numa, sizeof(numa), "%d", p->numa_node);
		fprintf(f, "  rank %-3d gpu %-3s numa %-3s cpus %s\n", p->rank, gpu, numa, p->cpuset_str);
	}
}
