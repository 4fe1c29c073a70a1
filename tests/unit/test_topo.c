/* Unit tests for the topology module: placement plans on hwloc XML fixtures and the real machine. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "topo.h"

#ifndef MOE_TEST_DATA_DIR
#error "MOE_TEST_DATA_DIR must name the tests/data directory"
#endif

#define TOPO_NO_GPU MOE_TEST_DATA_DIR "/topo-2numa-no-gpu.xml"
#define TOPO_4GPU MOE_TEST_DATA_DIR "/topo-2numa-4gpu.xml"
#define TOPO_1GPU MOE_TEST_DATA_DIR "/topo-1numa-1gpu.xml"

static hwloc_topology_t load(const char *xml)
{
	hwloc_topology_t topo = NULL;
	char err[256] = "";

	if (moe_topo_load(&topo, xml, err, sizeof(err)) != 0)
		fail_msg("moe_topo_load(%s): %s", xml ? xml : "this machine", err);
	return topo;
}

static void build(hwloc_topology_t topo, int nranks, enum moe_bind bind, struct moe_plan *plan)
{
	char err[256] = "";

	if (moe_plan_build(topo, nranks, bind, plan, err, sizeof(err)) != 0)
		fail_msg("moe_plan_build(%d ranks, %s): %s", nranks, moe_bind_name(bind), err);
	assert_int_equal(plan->nranks, nranks);
}

static hwloc_bitmap_t parse_list(const char *list)
{
	hwloc_bitmap_t set = hwloc_bitmap_alloc();

	assert_non_null(set);
	assert_int_equal(hwloc_bitmap_list_sscanf(set, list), 0);
	return set;
}

static void assert_cpuset_is(const struct moe_rank_place *p, const char *list)
{
	hwloc_bitmap_t want = parse_list(list);

	assert_non_null(p->cpuset);
	if (!hwloc_bitmap_isequal(p->cpuset, want))
		fail_msg("rank %d: cpuset %s, expected %s", p->rank, p->cpuset_str, list);
	assert_string_equal(p->cpuset_str, list);
	hwloc_bitmap_free(want);
}

static void assert_all_disjoint(const struct moe_plan *plan)
{
	for (int a = 0; a < plan->nranks; a++) {
		assert_non_null(plan->ranks[a].cpuset);
		assert_false(hwloc_bitmap_iszero(plan->ranks[a].cpuset));
		for (int b = a + 1; b < plan->nranks; b++)
			if (hwloc_bitmap_intersects(plan->ranks[a].cpuset, plan->ranks[b].cpuset))
				fail_msg("ranks %d (%s) and %d (%s) overlap", a, plan->ranks[a].cpuset_str, b,
					 plan->ranks[b].cpuset_str);
	}
}

static void test_bind_parse(void **state)
{
	static const char *const words[] = {"auto", "none", "core", "numa", "gpu"};
	enum moe_bind b = MOE_BIND_NONE;

	(void)state;
	for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++) {
		assert_int_equal(moe_bind_parse(words[i], &b), 0);
		assert_string_equal(moe_bind_name(b), words[i]);
	}
	assert_int_equal(moe_bind_parse("gpu", &b), 0);
	assert_int_equal(b, MOE_BIND_GPU);
	b = MOE_BIND_CORE;
	assert_int_equal(moe_bind_parse("foo", &b), -1);
	assert_int_equal(moe_bind_parse("", &b), -1);
	assert_int_equal(moe_bind_parse("GPU ", &b), -1);
	assert_int_equal(b, MOE_BIND_CORE); /* untouched on failure */
}

static void test_load_missing_xml(void **state)
{
	hwloc_topology_t topo = (hwloc_topology_t)0x1;
	char err[256] = "";

	(void)state;
	assert_int_equal(moe_topo_load(&topo, MOE_TEST_DATA_DIR "/no-such-topology.xml", err, sizeof(err)), -1);
	assert_null(topo);
	assert_non_null(strstr(err, "no-such-topology.xml"));
	assert_non_null(strstr(err, strerror(ENOENT)));
}

static void test_gpus_in_bus_order(void **state)
{
	static const char *const busids[] = {"0000:18:00.0", "0000:3b:00.0", "0000:86:00.0", "0000:af:00.0"};
	static const int numa[] = {0, 0, 1, 1};
	static const char *const cpus[] = {"0-7", "0-7", "8-15", "8-15"};
	hwloc_topology_t topo = load(TOPO_4GPU);
	struct moe_plan plan;

	(void)state;
	build(topo, 4, MOE_BIND_AUTO, &plan);
	assert_int_equal(plan.bind, MOE_BIND_GPU);
	/* The InfiniBand NIC and the GPU's HDMI audio function are not GPUs. */
	assert_int_equal(plan.ngpus, 4);
	for (int g = 0; g < 4; g++) {
		assert_string_equal(plan.gpus[g].pci_busid, busids[g]);
		assert_int_equal(plan.gpus[g].numa_node, numa[g]);
		assert_string_equal(plan.gpus[g].cpuset, cpus[g]);
	}
	moe_plan_free(&plan);
	hwloc_topology_destroy(topo);
}

static void check_gpu_plan(const struct moe_plan *plan)
{
	for (int r = 0; r < plan->nranks; r++) {
		const struct moe_rank_place *p = &plan->ranks[r];
		hwloc_bitmap_t loc;

		assert_int_equal(p->rank, r);
		assert_int_equal(p->gpu, r % plan->ngpus);
		assert_string_equal(p->pci_busid, plan->gpus[p->gpu].pci_busid);
		assert_int_equal(p->numa_node, plan->gpus[p->gpu].numa_node);
		loc = parse_list(plan->gpus[p->gpu].cpuset);
		if (!hwloc_bitmap_isincluded(p->cpuset, loc))
			fail_msg("rank %d cpus %s outside gpu %d locality %s", r, p->cpuset_str, p->gpu,
				 plan->gpus[p->gpu].cpuset);
		hwloc_bitmap_free(loc);
	}
}

static void test_gpu_mode_4gpu(void **state)
{
	hwloc_topology_t topo = load(TOPO_4GPU);
	struct moe_plan plan;

	(void)state;
	/* One rank per GPU: the two GPUs of a package split its 8 cores. */
	build(topo, 4, MOE_BIND_GPU, &plan);
	check_gpu_plan(&plan);
	assert_all_disjoint(&plan);
	assert_cpuset_is(&plan.ranks[0], "0-3");
	assert_cpuset_is(&plan.ranks[1], "4-7");
	assert_cpuset_is(&plan.ranks[2], "8-11");
	assert_cpuset_is(&plan.ranks[3], "12-15");
	moe_plan_free(&plan);

	/* Two ranks per GPU: ranks r and r+4 share GPU r and still get their own cores. */
	build(topo, 8, MOE_BIND_GPU, &plan);
	check_gpu_plan(&plan);
	assert_all_disjoint(&plan);
	for (int r = 0; r < 8; r++)
		assert_int_equal(hwloc_bitmap_weight(plan.ranks[r].cpuset), 2);
	moe_plan_free(&plan);

	/* Odd count: GPUs 0-2 get two ranks, GPU 3 one. */
	build(topo, 7, MOE_BIND_GPU, &plan);
	check_gpu_plan(&plan);
	assert_all_disjoint(&plan);
	moe_plan_free(&plan);
	hwloc_topology_destroy(topo);
}

static void test_gpu_mode_one_gpu(void **state)
{
	hwloc_topology_t topo = load(TOPO_1GPU);
	struct moe_plan plan;

	(void)state;
	build(topo, 4, MOE_BIND_GPU, &plan);
	assert_int_equal(plan.ngpus, 1);
	assert_string_equal(plan.gpus[0].pci_busid, "0000:01:00.0");
	assert_int_equal(plan.gpus[0].numa_node, 0);
	check_gpu_plan(&plan);
	assert_all_disjoint(&plan);
	assert_cpuset_is(&plan.ranks[0], "0-3");
	assert_cpuset_is(&plan.ranks[1], "4-7");
	assert_cpuset_is(&plan.ranks[2], "8-11");
	assert_cpuset_is(&plan.ranks[3], "12-15");
	moe_plan_free(&plan);

	/* A single rank keeps the whole locality. */
	build(topo, 1, MOE_BIND_GPU, &plan);
	assert_cpuset_is(&plan.ranks[0], "0-15");
	moe_plan_free(&plan);
	hwloc_topology_destroy(topo);
}

static void test_gpu_mode_more_ranks_than_cores(void **state)
{
	hwloc_topology_t topo = load(TOPO_1GPU);
	struct moe_plan plan;

	(void)state;
	build(topo, 20, MOE_BIND_GPU, &plan);
	check_gpu_plan(&plan);
	for (int r = 0; r < 20; r++) {
		char want[8];

		snprintf(want, sizeof(want), "%d", r % 16);
		assert_cpuset_is(&plan.ranks[r], want);
	}
	moe_plan_free(&plan);
	hwloc_topology_destroy(topo);
}

static void test_gpu_mode_without_gpu_falls_back(void **state)
{
	hwloc_topology_t topo = load(TOPO_NO_GPU);
	struct moe_plan plan;

	(void)state;
	build(topo, 2, MOE_BIND_GPU, &plan);
	assert_int_equal(plan.bind, MOE_BIND_CORE);
	assert_int_equal(plan.ngpus, 0);
	for (int r = 0; r < 2; r++) {
		assert_int_equal(plan.ranks[r].gpu, -1);
		assert_string_equal(plan.ranks[r].pci_busid, "");
		assert_non_null(plan.ranks[r].cpuset);
	}
	moe_plan_free(&plan);

	build(topo, 2, MOE_BIND_AUTO, &plan);
	assert_int_equal(plan.bind, MOE_BIND_CORE);
	moe_plan_free(&plan);
	hwloc_topology_destroy(topo);
}

static void test_core_mode_spreads_over_nodes(void **state)
{
	hwloc_topology_t topo = load(TOPO_NO_GPU);
	struct moe_plan plan;
	int per_node[2] = {0, 0};

	(void)state;
	build(topo, 2, MOE_BIND_CORE, &plan);
	assert_int_equal(plan.bind, MOE_BIND_CORE);
	assert_all_disjoint(&plan);
	assert_int_equal(plan.ranks[0].numa_node, 0);
	assert_int_equal(plan.ranks[1].numa_node, 1);
	assert_cpuset_is(&plan.ranks[0], "0-3");
	assert_cpuset_is(&plan.ranks[1], "4-7");
	moe_plan_free(&plan);

	/* One core each, four ranks per node. */
	build(topo, 8, MOE_BIND_CORE, &plan);
	assert_all_disjoint(&plan);
	for (int r = 0; r < 8; r++) {
		assert_int_equal(hwloc_bitmap_weight(plan.ranks[r].cpuset), 1);
		assert_in_range(plan.ranks[r].numa_node, 0, 1);
		per_node[plan.ranks[r].numa_node]++;
	}
	assert_int_equal(per_node[0], 4);
	assert_int_equal(per_node[1], 4);
	moe_plan_free(&plan);

	build(topo, 3, MOE_BIND_CORE, &plan);
	assert_all_disjoint(&plan);
	moe_plan_free(&plan);

	/* One rank spans both nodes, so no single node can be claimed for its memory. */
	build(topo, 1, MOE_BIND_CORE, &plan);
	assert_cpuset_is(&plan.ranks[0], "0-7");
	assert_int_equal(plan.ranks[0].numa_node, -1);
	moe_plan_free(&plan);
	hwloc_topology_destroy(topo);
}

static void test_core_mode_more_ranks_than_cores(void **state)
{
	hwloc_topology_t topo = load(TOPO_NO_GPU);
	struct moe_plan plan;

	(void)state;
	build(topo, 10, MOE_BIND_CORE, &plan);
	for (int r = 0; r < 10; r++) {
		char want[8];

		snprintf(want, sizeof(want), "%d", r % 8);
		assert_cpuset_is(&plan.ranks[r], want);
		assert_int_equal(plan.ranks[r].numa_node, (r % 8) / 4);
	}
	moe_plan_free(&plan);
	hwloc_topology_destroy(topo);
}

static void test_core_mode_keeps_gpu_assignment(void **state)
{
	hwloc_topology_t topo = load(TOPO_4GPU);
	struct moe_plan plan;

	(void)state;
	build(topo, 6, MOE_BIND_CORE, &plan);
	assert_int_equal(plan.bind, MOE_BIND_CORE);
	assert_all_disjoint(&plan);
	for (int r = 0; r < 6; r++)
		assert_int_equal(plan.ranks[r].gpu, r % 4);
	moe_plan_free(&plan);
	hwloc_topology_destroy(topo);
}

static void test_numa_mode_round_robin(void **state)
{
	hwloc_topology_t topo = load(TOPO_NO_GPU);
	struct moe_plan plan;

	(void)state;
	build(topo, 5, MOE_BIND_NUMA, &plan);
	assert_int_equal(plan.bind, MOE_BIND_NUMA);
	for (int r = 0; r < 5; r++) {
		assert_int_equal(plan.ranks[r].numa_node, r % 2);
		assert_cpuset_is(&plan.ranks[r], r % 2 ? "4-7" : "0-3");
	}
	moe_plan_free(&plan);
	hwloc_topology_destroy(topo);
}

static void test_none_mode_has_no_cpuset(void **state)
{
	hwloc_topology_t topo = load(TOPO_4GPU);
	struct moe_plan plan;
	char err[256] = "";

	(void)state;
	build(topo, 3, MOE_BIND_NONE, &plan);
	assert_int_equal(plan.bind, MOE_BIND_NONE);
	for (int r = 0; r < 3; r++) {
		assert_null(plan.ranks[r].cpuset);
		assert_string_equal(plan.ranks[r].cpuset_str, "all");
		assert_int_equal(plan.ranks[r].numa_node, -1);
		assert_int_equal(plan.ranks[r].gpu, r);
		assert_int_equal(moe_plan_apply(topo, &plan, r, err, sizeof(err)), 0);
	}
	moe_plan_free(&plan);
	hwloc_topology_destroy(topo);
}

static void test_bad_rank_counts(void **state)
{
	hwloc_topology_t topo = load(TOPO_NO_GPU);
	struct moe_plan plan;
	char err[256] = "";

	(void)state;
	assert_int_equal(moe_plan_build(topo, 0, MOE_BIND_CORE, &plan, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "rank"));
	assert_null(plan.ranks);
	moe_plan_free(&plan); /* harmless on a plan that failed to build */

	build(topo, 2, MOE_BIND_CORE, &plan);
	err[0] = '\0';
	assert_int_equal(moe_plan_apply(topo, &plan, 2, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "out of range"));
	moe_plan_free(&plan);
	hwloc_topology_destroy(topo);
}

static void test_plan_print(void **state)
{
	hwloc_topology_t topo = load(TOPO_4GPU);
	struct moe_plan plan;
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);

	(void)state;
	assert_non_null(f);
	build(topo, 5, MOE_BIND_GPU, &plan);
	moe_plan_print(f, topo, &plan);
	fclose(f);
	assert_non_null(strstr(text, "2 packages, 2 NUMA nodes, 16 cores, 16 PUs"));
	assert_non_null(strstr(text, "bind gpu, 5 ranks, 4 GPUs"));
	assert_non_null(strstr(text, "gpu 0   pci 0000:18:00.0  numa 0   cpus 0-7\n"));
	assert_non_null(strstr(text, "gpu 3   pci 0000:af:00.0  numa 1   cpus 8-15\n"));
	assert_non_null(strstr(text, "rank 4   gpu 0   numa 0   cpus "));
	free(text);
	moe_plan_free(&plan);
	hwloc_topology_destroy(topo);
}

/* Binding is checked in a child so the test runner's own affinity is left alone. */
static void test_apply_binds_this_process(void **state)
{
	hwloc_topology_t topo = load(NULL);
	int ncores = hwloc_get_nbobjs_by_type(topo, HWLOC_OBJ_CORE);
	struct moe_plan plan;
	int status = 0;
	pid_t pid;

	(void)state;
	if (ncores < 1)
		ncores = 1;
	build(topo, ncores, MOE_BIND_CORE, &plan);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		const struct moe_rank_place *p = &plan.ranks[ncores - 1];
		hwloc_bitmap_t now = hwloc_bitmap_alloc();
		char err[256] = "";

		if (moe_plan_apply(topo, &plan, ncores - 1, err, sizeof(err)) != 0) {
			fprintf(stderr, "apply: %s\n", err);
			_exit(1);
		}
		if (hwloc_get_cpubind(topo, now, HWLOC_CPUBIND_PROCESS) != 0 || !hwloc_bitmap_isequal(now, p->cpuset))
			_exit(2);
		/* A note in err means the machine cannot bind memory; then there is nothing to check. */
		if (p->numa_node >= 0 && !err[0]) {
			hwloc_obj_t node = hwloc_get_numanode_obj_by_os_index(topo, (unsigned)p->numa_node);
			hwloc_membind_policy_t policy;

			if (hwloc_get_membind(topo, now, &policy, HWLOC_MEMBIND_THREAD | HWLOC_MEMBIND_BYNODESET) != 0 ||
			    policy != HWLOC_MEMBIND_BIND || !hwloc_bitmap_isequal(now, node->nodeset))
				_exit(3);
		}
		_exit(0);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	moe_plan_free(&plan);
	hwloc_topology_destroy(topo);
}

static void test_apply_reports_cpubind_failure(void **state)
{
	hwloc_topology_t real = load(NULL);
	hwloc_topology_t fake = load(TOPO_1GPU);
	struct moe_plan plan;
	char err[256] = "";

	(void)state;
	/* A plan made for a bigger machine names CPUs this one lacks. */
	if (hwloc_bitmap_isset(hwloc_topology_get_complete_cpuset(real), 12)) {
		hwloc_topology_destroy(fake);
		hwloc_topology_destroy(real);
		skip();
	}
	build(fake, 4, MOE_BIND_GPU, &plan);
	assert_int_equal(moe_plan_apply(real, &plan, 3, err, sizeof(err)), -1);
	assert_string_equal(err, "hwloc_set_cpubind(cpuset 12-15): Invalid argument");
	moe_plan_free(&plan);
	hwloc_topology_destroy(fake);
	hwloc_topology_destroy(real);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_bind_parse),
		cmocka_unit_test(test_load_missing_xml),
		cmocka_unit_test(test_gpus_in_bus_order),
		cmocka_unit_test(test_gpu_mode_4gpu),
		cmocka_unit_test(test_gpu_mode_one_gpu),
		cmocka_unit_test(test_gpu_mode_more_ranks_than_cores),
		cmocka_unit_test(test_gpu_mode_without_gpu_falls_back),
		cmocka_unit_test(test_core_mode_spreads_over_nodes),
		cmocka_unit_test(test_core_mode_more_ranks_than_cores),
		cmocka_unit_test(test_core_mode_keeps_gpu_assignment),
		cmocka_unit_test(test_numa_mode_round_robin),
		cmocka_unit_test(test_none_mode_has_no_cpuset),
		cmocka_unit_test(test_bad_rank_counts),
		cmocka_unit_test(test_plan_print),
		cmocka_unit_test(test_apply_binds_this_process),
		cmocka_unit_test(test_apply_reports_cpubind_failure),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
