#!/usr/bin/env python3
"""External referee: recompute moebench's --dump tensors with Hugging Face transformers' MoE blocks.

    referee.py RUN_JSON DUMP_ROOT [--case NAME ...] [--engine hf|numpy] [--tol X]

RUN_JSON is the run.json of a `moebench run --dump DUMP_ROOT` (it gives each case's parameters);
DUMP_ROOT/<case>/rank<r>_layer<l>_*.npy are the tensors (harness/rank/dump.c). For every rank and layer
the referee feeds the dumped input x (each layer its own dumped input) through Qwen3MoeSparseMoeBlock
(softmax router) or DeepseekV3MoE (sigmoid, group-limited router) in float64, loaded with the dumped
router and expert weights, and compares (1) the output with the dumped y per token and (2) the expert
set of every row the rank dispatched with the referee's. --engine numpy runs the same math in plain
numpy float64 instead (for machines without torch; it checks the loading and mapping, not moebench
against another framework). Exits 0 when everything agrees, 1 on a disagreement, 2 on bad input.
"""
import argparse
import fnmatch
import glob
import json
import math
import os
import re
import sys
import warnings

import numpy as np

# DeepseekV3MoE builds its shared-expert MLP at width 0 (n_shared_experts = 0); torch warns about it
warnings.filterwarnings("ignore", message="Initializing zero-element tensors")

# Per-token relative error bound, ||y - y_ref|| / ||y_ref||. moebench keeps activations and weights in
# bf16 (unit roundoff u = 2^-9 ~ 1.95e-3) and rounds on the way: the expert hidden h = silu(g) * u, each
# expert's output, and the combined y; fp32 accumulation adds ~H * 2^-24, negligible. Three roundings
# give ~3u ~ 6e-3 per element in the worst case (RMS over a row is smaller), and the weighted sum of
# top-K expert outputs can cancel, amplifying the relative error of the sum by a few. 2e-2 (~10u) is
# moebench's own default swiglu tolerance; a wrong weight, a lost slot or a wrong expert moves a token
# by O(1/K) or more, far above it. Measured on the GPU: 4.6e-3 worst.
REL_TOL = 2e-2
# Routing weights: moebench computes them in fp32 from bf16 inputs; for the small shapes run here
# their error is ~1e-6. 1e-3 flags a weight from the wrong expert or a missing normalisation.
W_TOL = 1e-3


def fail_input(msg):
    print("referee: %s" % msg, file=sys.stderr)
    sys.exit(2)


def load(d, name):
    path = os.path.join(d, name)
    if not os.path.exists(path):
        fail_input("missing %s" % path)
    return np.load(path)


def bf16_round(a):
    """float32 -> nearest bf16 (ties to even), kept as float32; finite values only."""
    u = np.ascontiguousarray(a, dtype=np.float32).view(np.uint32).astype(np.uint64)
    u = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16) << 16
    return u.astype(np.uint32).view(np.float32)


# ---------------------------------------------------------------- case parameters and row layout


class Case:
    def __init__(self, name, params, folder):
        p = params
        self.name, self.folder = name, folder
        self.H, self.F, self.E, self.K = (int(p[k]) for k in ("hidden", "ffn", "experts", "topk"))
        self.score = p["score"]
        self.norm = p["route_norm"] == "true"
        self.scale = float(p["route_scale"])
        self.groups, self.topk_groups = int(p["groups"]), int(p["topk_groups"])
        self.dp, self.tp = int(p["dp"]), int(p["tp"])
        self.partition, self.pad = p["partition"], p["pad"]
        self.layers = int(p["layers"])
        self.strategy = p["strategy"]
        self.p = p

    def unsupported(self):
        """Why transformers' blocks cannot express this case, or None."""
        p = self.p
        if p["expert"] != "swiglu":
            return "expert = %s (the referee's blocks are swiglu)" % p["expert"]
        if p["routing"] != "router":
            return "routing = %s (synthetic routing has no router to compare)" % p["routing"]
        if p["route_bias"] == "true":
            return "route_bias = true (the seeded bias is not dumped)"
        if int(p["shared_experts"]) or p["score_before_experts"] == "true":
            return "shared experts / score_before_experts are not dumped"
        if self.score == "softmax" and (self.scale != 1.0 or self.groups != 1):
            return "softmax with route_scale or groups (Qwen3-MoE has neither)"
        return None

    def slice_rows(self, rank, T):
        """(first token, real rows, total rows) of the group's rows this rank dispatched."""
        t = rank % self.tp
        if self.partition == "replicate":
            return 0, T, T
        if self.partition == "leader":
            return (0, T, T) if t == 0 else (0, 0, 0)
        pad = (self.tp - T % self.tp) % self.tp
        L = (T + pad) // self.tp
        s0 = t * L
        return s0, max(0, min(L, T - s0)), L


# ---------------------------------------------------------------- the reference computations


def route_np(case, logits):
    """Selection scores (masked outside kept groups), weights source scores, top-K ids (lowest id on ties)."""
    if case.score == "softmax":
        z = logits - logits.max(axis=1, keepdims=True)
        p = np.exp(z)
        p /= p.sum(axis=1, keepdims=True)
    else:
        p = 1.0 / (1.0 + np.exp(-logits))
    sel = p.copy()
    if case.groups > 1:
        per = case.E // case.groups
        g = np.sort(sel.reshape(len(sel), case.groups, per), axis=2)[:, :, -2:].sum(axis=2)
        order = np.argsort(-g, axis=1, kind="stable")[:, : case.topk_groups]
        keep = np.zeros_like(g, dtype=bool)
        np.put_along_axis(keep, order, True, axis=1)
        sel[~np.repeat(keep, per, axis=1)] = -np.inf
    idx = np.argsort(-sel, axis=1, kind="stable")[:, : case.K]
    w = np.take_along_axis(p, idx, axis=1)
    if case.norm:
        w = w / (w.sum(axis=1, keepdims=True) + 1e-20)
    return sel, idx, w * case.scale


def numpy_engine(case, x, wg, w1, w3, w2):
    _, idx, w = route_np(case, x @ wg.T)
    y = np.zeros_like(x)
    for k in range(case.K):
        for e in np.unique(idx[:, k]):
            rows = np.nonzero(idx[:, k] == e)[0]
            g, u = x[rows] @ w1[e].T, x[rows] @ w3[e].T
            y[rows] += w[rows, k, None] * ((g / (1.0 + np.exp(-g)) * u) @ w2[e].T)
    return y, idx, w


class HfEngine:
    """transformers' block for the case, built once per case, loaded per layer."""

    def __init__(self, case):
        try:
            import torch
            import transformers
        except ImportError as e:
            fail_input("--engine hf needs torch and transformers (%s)" % e)
        self.torch, self.case = torch, case
        self.version = transformers.__version__
        torch.manual_seed(0)
        if case.score == "softmax":
            from transformers.models.qwen3_moe import modeling_qwen3_moe as m

            cfg = m.Qwen3MoeConfig(hidden_size=case.H, moe_intermediate_size=case.F, num_experts=case.E,
                                   num_experts_per_tok=case.K, norm_topk_prob=case.norm, hidden_act="silu")
            self.kind, cls = "Qwen3MoeSparseMoeBlock", getattr(m, "Qwen3MoeSparseMoeBlock", None)
        else:
            from transformers.models.deepseek_v3 import modeling_deepseek_v3 as m

            cfg = m.DeepseekV3Config(hidden_size=case.H, moe_intermediate_size=case.F,
                                     n_routed_experts=case.E, num_experts_per_tok=case.K, n_group=case.groups,
                                     topk_group=case.topk_groups, norm_topk_prob=case.norm,
                                     routed_scaling_factor=case.scale, n_shared_experts=0, hidden_act="silu")
            self.kind, cls = "DeepseekV3MoE", getattr(m, "DeepseekV3MoE", None)
        if cls is None:
            fail_input("transformers %s has no %s" % (self.version, self.kind))
        for k, v in (("num_local_experts", case.E), ("num_experts", case.E)):
            if getattr(cfg, k, v) != v:  # versions name the expert count differently; keep them consistent
                setattr(cfg, k, v)
        try:
            cfg._experts_implementation = "eager"  # the reference loop, not a fused kernel
        except Exception:
            pass
        self.block = cls(cfg).to(torch.float64).eval()
        self.gate = getattr(self.block, "gate", None)
        if self.gate is None or not hasattr(self.gate, "weight"):
            fail_input("transformers %s: %s has no gate.weight" % (self.version, self.kind))

    def load(self, wg, w1, w3, w2):
        t, case = self.torch, self.case
        with t.no_grad():
            self._set(self.gate.weight, wg, "gate.weight")
            bias = getattr(self.gate, "e_score_correction_bias", None)
            if bias is not None:
                bias.zero_()  # route_bias = false
            ex = self.block.experts
            if hasattr(ex, "gate_up_proj") and hasattr(ex, "down_proj"):
                gu, dn = np.concatenate([w1, w3], axis=1), w2  # (E, 2F, H), (E, H, F)
                if getattr(ex, "is_transposed", False):
                    gu, dn = gu.transpose(0, 2, 1), dn.transpose(0, 2, 1)
                self._set(ex.gate_up_proj, gu, "experts.gate_up_proj")
                self._set(ex.down_proj, dn, "experts.down_proj")
            elif len(ex) == case.E and all(hasattr(ex[0], a) for a in ("gate_proj", "up_proj", "down_proj")):
                for e in range(case.E):  # transformers 4.x: one MLP module per expert
                    self._set(ex[e].gate_proj.weight, w1[e], "experts[%d].gate_proj.weight" % e)
                    self._set(ex[e].up_proj.weight, w3[e], "experts[%d].up_proj.weight" % e)
                    self._set(ex[e].down_proj.weight, w2[e], "experts[%d].down_proj.weight" % e)
            else:
                fail_input("transformers %s: %s.experts has neither gate_up_proj/down_proj nor per-expert "
                           "gate_proj/up_proj/down_proj (found: %s)"
                           % (self.version, self.kind, ", ".join(n for n, _ in ex.named_parameters())))
            sh = getattr(self.block, "shared_experts", None)
            for prm in sh.parameters() if sh is not None else ():
                prm.zero_()  # shared_experts = 0

    def _set(self, prm, a, what):
        if tuple(prm.shape) != a.shape:
            fail_input("transformers %s: %s.%s has shape %s, the dump gives %s"
                       % (self.version, self.kind, what, tuple(prm.shape), a.shape))
        prm.copy_(self.torch.from_numpy(np.ascontiguousarray(a)))

    def route(self, xt):
        """(ids, weights) from the block's own router; versions return them in different orders."""
        out = self.gate(xt)
        if isinstance(out, self.torch.Tensor):  # transformers 4.x Qwen3: a linear layer giving logits
            p = self.torch.softmax(out, dim=-1, dtype=self.torch.float)
            w, idx = self.torch.topk(p, self.case.K, dim=-1)
            if self.case.norm:
                w = w / w.sum(dim=-1, keepdim=True)
            return idx, w
        ints = [o for o in out if not o.is_floating_point()]
        flts = [o for o in out if o.is_floating_point() and o.shape == ints[0].shape]
        return ints[0], flts[0]

    def __call__(self, x):
        t = self.torch
        with t.no_grad():
            xt = t.from_numpy(x).reshape(1, len(x), -1)
            try:
                y = self.block(xt)
            except RuntimeError as e:  # e.g. 4.x DeepseekV3MoE sums float64 outputs into a float32 buffer
                fail_input("transformers %s: %s does not run in float64: %s" % (self.version, self.kind, e))
            if isinstance(y, tuple):
                y = y[0]
            idx, w = self.route(xt.reshape(len(x), -1))
        return (y.reshape(len(x), -1).double().numpy(), idx.numpy(),
                w.double().numpy())


# ---------------------------------------------------------------- comparison


class Tally:
    def __init__(self):
        self.worst = (0.0, "")
        self.rows = self.same = self.ties = self.checks = self.bad = 0
        self.wdiff = 0.0

    def error(self, msg):
        print("MISMATCH %s" % msg)
        self.bad += 1


_weights = {}


def expert_weights(case, layer):
    """Every expert's (w1, w3, w2) from whichever ranks dumped it; copies must agree bit for bit."""
    if (case.folder, layer) not in _weights:
        _weights[(case.folder, layer)] = read_expert_weights(case, layer)
    return _weights[(case.folder, layer)]


def read_expert_weights(case, layer):
    W = [None] * case.E
    for e in range(case.E):
        for f in sorted(glob.glob(os.path.join(case.folder, "rank*_layer%d_expert%d_w1.npy" % (layer, e)))):
            pre = f[: -len("w1.npy")]
            trip = tuple(np.load(pre + s + ".npy").astype(np.float64) for s in ("w1", "w3", "w2"))
            if W[e] is None:
                W[e] = trip
            elif any(not np.array_equal(a, b) for a, b in zip(W[e], trip)):
                fail_input("%s layer %d expert %d: ranks dumped different weights" % (case.name, layer, e))
    missing = [e for e in range(case.E) if W[e] is None]
    if missing:
        fail_input("%s layer %d: no rank dumped experts %s" % (case.name, layer, missing))
    return [np.stack([W[e][i] for e in range(case.E)]) for i in range(3)]


def near_tie(case, x, wg, dumped, ref):
    """Does a differing expert set come from scores within fp32 rounding of each other?"""
    logits = x @ wg.T
    # moebench's logits are fp32 dot products of bf16 values: error <= H * 2^-24 * sum|x||w|. softmax and
    # sigmoid move a score by at most twice a logit's error; 8x that is the slack for a tie.
    gamma = case.H * 2.0 ** -24 * np.max(np.abs(wg) @ np.abs(x))
    sel, _, _ = route_np(case, logits[None, :])
    sel = sel[0]
    kth = np.sort(sel[ref])[0]
    if case.groups > 1 and not np.all(np.isfinite(sel[dumped])):
        return False  # a group outside the kept ones: judged exact here (group ties are not expected)
    return bool(np.all(sel[dumped] >= kth - 8 * gamma))


def check_rank_layer(case, engine, rank, layer, tally):
    d, where = case.folder, "%s rank %d layer %d" % (case.name, rank, layer)
    x = load(d, "rank%d_layer%d_x.npy" % (rank, layer)).astype(np.float64)
    y = load(d, "rank%d_layer%d_y.npy" % (rank, layer)).astype(np.float64)
    idx = load(d, "rank%d_layer%d_idx.npy" % (rank, layer))
    w = load(d, "rank%d_layer%d_w.npy" % (rank, layer)).astype(np.float64)
    wg = load(d, "rank%d_layer%d_wg.npy" % (rank, layer)).astype(np.float64)
    T = len(x)
    s0, nreal, n = case.slice_rows(rank, T)
    if idx.shape != (n, case.K) or y.shape != x.shape:
        return tally.error("%s: idx %s / y %s, expected (%d, %d) rows from the layout"
                           % (where, idx.shape, y.shape, n, case.K))
    tally.checks += 1
    if layer > 0:  # moebench's residual: x_l = bf16(x_{l-1} + y_{l-1}), added in fp32
        xp = load(d, "rank%d_layer%d_x.npy" % (rank, layer - 1))
        yp = load(d, "rank%d_layer%d_y.npy" % (rank, layer - 1))
        if not np.array_equal(bf16_round(xp + yp), load(d, "rank%d_layer%d_x.npy" % (rank, layer))):
            tally.error("%s: input is not layer %d's input + output" % (where, layer - 1))
    if T == 0:
        return
    w1, w3, w2 = expert_weights(case, layer)
    if engine == "numpy":
        yr, ir, wr = numpy_engine(case, x, wg, w1, w3, w2)
    else:
        engine.load(wg, w1, w3, w2)
        yr, ir, wr = engine(x)
    num = np.linalg.norm(y - yr, axis=1)
    den = np.linalg.norm(yr, axis=1)
    rel = np.where(den > 0, num / np.maximum(den, 1e-300), num)
    worst = int(np.argmax(rel))
    if rel[worst] > tally.worst[0]:
        tally.worst = (float(rel[worst]), "%s token %d" % (where, worst))
    for t in np.nonzero(rel > REL_TOL)[0][:5]:
        tally.error("%s token %d: relative error %.3g > %.3g" % (where, t, rel[t], REL_TOL))
    compare_routing(case, where, x, wg, idx, w, ir, wr, s0, nreal, n, tally)


def compare_routing(case, where, x, wg, idx, w, ir, wr, s0, nreal, n, tally):
    for i in range(nreal):
        t = s0 + i
        tally.rows += 1
        a, b = set(idx[i].tolist()), set(ir[t].tolist())
        if a == b:
            tally.same += 1
            ref = dict(zip(ir[t].tolist(), wr[t].tolist()))
            dw = max(abs(w[i, k] - ref[int(idx[i, k])]) for k in range(case.K))
            tally.wdiff = max(tally.wdiff, dw)
            if dw > W_TOL:
                tally.error("%s token %d: routing weight off by %.3g" % (where, t, dw))
        elif near_tie(case, x[t], wg, idx[i], ir[t]):
            tally.ties += 1
        else:
            tally.error("%s token %d: experts %s, referee %s" % (where, t, sorted(a), sorted(b)))
    if n > nreal and case.pad in ("mask", "buffer"):
        if np.any(idx[nreal:] != 0) or np.any(w[nreal:] != 0):
            tally.error("%s: %s pad rows are not routed to expert 0 with weight 0" % (where, case.pad))
    elif n > nreal:  # zero_token: a zero row through the router; all scores tie, lowest ids win
        z = np.zeros((1, case.H))
        _, iz, wz = route_np(case, z @ wg.T)
        for i in range(nreal, n):
            tally.rows += 1
            if not np.array_equal(idx[i], iz[0]) or np.max(np.abs(w[i] - wz[0])) > W_TOL:
                tally.error("%s pad row %d: routed %s %s, a zero token routes %s %s"
                            % (where, i, idx[i].tolist(), w[i].tolist(), iz[0].tolist(), wz[0].tolist()))
            else:
                tally.same += 1


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run_json")
    ap.add_argument("dump_root")
    ap.add_argument("--case", action="append", help="case name (glob); default every case")
    ap.add_argument("--engine", choices=("hf", "numpy"), default="hf")
    ap.add_argument("--tol", type=float, default=REL_TOL)
    a = ap.parse_args()
    globals()["REL_TOL"] = a.tol
    try:
        run = json.load(open(a.run_json))
    except (OSError, ValueError) as e:
        fail_input("%s: %s" % (a.run_json, e))
    tally, done = Tally(), 0
    for c in run["cases"]:
        if a.case and not any(fnmatch.fnmatchcase(c["name"], g) for g in a.case):
            continue
        folder = os.path.join(a.dump_root, re.sub(r"[/ ]", "_", c["name"]))
        case = Case(c["name"], c["params"], folder)
        why = case.unsupported()
        if why or not os.path.isdir(folder):
            print("skip %s: %s" % (c["name"], why or "no dump folder %s" % folder))
            continue
        engine = HfEngine(case) if a.engine == "hf" else "numpy"
        ranks = case.dp * case.tp
        before = tally.bad
        for r in range(ranks):
            for l in range(case.layers):
                check_rank_layer(case, engine, r, l, tally)
        done += 1
        label = "numpy float64" if engine == "numpy" else "%s (transformers %s)" % (engine.kind, engine.version)
        print("%s %s: %d ranks x %d layers against %s" % ("ok" if tally.bad == before else "FAIL", c["name"],
                                                         ranks, case.layers, label))
    if not done:
        fail_input("no case to referee in %s" % a.run_json)
    print("referee: %d cases, %d rank-layers; worst per-token relative error %.3g (%s); expert sets "
          "identical for %d of %d rows, %d near ties; worst routing weight difference %.3g; %d mismatches"
          % (done, tally.checks, tally.worst[0], tally.worst[1], tally.same, tally.rows, tally.ties,
             tally.wdiff, tally.bad))
    return 1 if tally.bad else 0


if __name__ == "__main__":
    sys.exit(main())
