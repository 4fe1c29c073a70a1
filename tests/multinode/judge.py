#!/usr/bin/env python3
"""Judges a run of every host scenario across two emulated nodes (2 ranks a node, 4 ranks) against the fork
launcher's oracle-checked run of the same scenarios (tests/multinode/reference.bash): each case must have run
(ok, or unchecked under --check off: its accounting, TP agreement and repeat digest still held) with the
digests of a fork case that passed the oracle bit for bit, so its outputs are verified ones, and its ranks
on their nodes; or be an error naming the rule (a dwdp or leader/sp TP group that crosses a node) or saying
that ll needs a transport that maps peers' memory; or be skipped (more ranks than the job has).
usage: judge.py FORK_RUN_JSON RUN_JSON NODE_A NODE_B"""
import json
import sys

fork = {c["name"]: c for c in json.load(open(sys.argv[1]))["cases"]}
run = json.load(open(sys.argv[2]))
node_a, node_b = sys.argv[3], sys.argv[4]
bad, same = [], 0
for c in run["cases"]:
    p, n = c["params"], int(c["params"]["dp"]) * int(c["params"]["tp"])
    # what must happen, from the layout alone: 2 ranks a node, the first n ranks of the world
    g = (int(p["dwdp_size"]) or n) if p["strategy"] == "dwdp" else int(p["tp"])
    crosses = (p["strategy"] == "dwdp" or (p["partition"] != "replicate" and int(p["tp"]) > 1)) and g > 2
    want = "skipped" if n > 4 else "error" if crosses else "ok"
    ll = p["strategy"] == "ll"  # the mpi transport cannot map peers' memory: refused before any rank runs
    if ll:
        want = "error"
    got = "ok" if c["verdict"] == "unchecked" and want == "ok" else c["verdict"]
    if got != want:
        bad.append(f"{c['name']}: {c['verdict']} ({c.get('reason')}), expected {want}")
    elif ll and "ll needs a transport that maps peers' memory" not in c["reason"]:
        bad.append(f"{c['name']}: ll refused without saying why: {c['reason']}")
    elif want == "error" and not ll and not c["reason"].startswith("rule: "):
        bad.append(f"{c['name']}: error without the rule: {c['reason']}")
    elif want == "ok":
        f = fork[c["name"]]
        if f["verdict"] != "ok":
            bad.append(f"{c['name']}: the fork launcher's case did not pass the oracle: {f['verdict']}")
        elif f["digests"] != c["digests"]:
            bad.append(f"{c['name']}: digests {c['digests']} differ from the fork launcher's {f['digests']}")
        nodes = [r["node"] for r in c["ranks"]]
        if nodes != [node_a if r < 2 else node_b for r in range(n)]:
            bad.append(f"{c['name']}: ranks on {nodes}")
        same += 1
missing = sorted(set(fork) - {c["name"] for c in run["cases"]})
if missing:
    bad.append(f"{len(missing)} of the reference's cases did not run: {missing[:5]}")
print(same, "cases identical")
print("\n".join(bad))
sys.exit(1 if bad or same < 50 else 0)
