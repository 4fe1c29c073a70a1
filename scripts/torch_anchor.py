#!/usr/bin/env python3
"""PyTorch anchors for `moebench calibrate`: the same figures, timed the same way, with plain PyTorch.

calibrate writes the spec (shapes, expert counts, models, repetitions) as JSON on this script's stdin, so the
shapes cannot drift from the ones calibrate times (they live in kernels/calib_shapes.h and the model table).
It can also be read from a file: torch_anchor.py --spec FILE.

Output, on stdout, one JSON object:
  {"figures": {KEY: number, ...}, "env": {...}, "errors": {KEY: "why", ...}}
where every KEY is the name calibrate gives its own figure (copy_GBps, gemm_TFLOPs,
experts_<shape>_grouped_TFLOPs) or, for figures calibrate has no counterpart of, a new name in the same style
(experts_<shape>_grouped_gateup_ms, experts_<shape>_grouped_down_ms, layer_<model>_eager_ms,
layer_<model>_graph_ms). calibrate stores "figures" as the object "torch" beside its own keys.

Exit status: 0 with the JSON, 77 when torch does not import or sees no CUDA device (reason on stderr), else 1.

Timing, as calibrate does it: warm-up calls for at least 20 ms of GPU time, then CUDA events around `reps`
back-to-back calls on the current stream (more where needed for the block to last 50 ms), the mean per call;
that is repeated `trials` times and the median kept. The L2 cache is not flushed (calibrate does not flush it
either).
"""
import argparse
import json
import statistics
import sys


def load_spec(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--spec", help="the spec as a JSON file (default: stdin)")
    a = ap.parse_args(argv)
    if a.spec:
        with open(a.spec) as f:
            return json.load(f)
    return json.load(sys.stdin)


class Timer:
    """ms per call, timed as calibrate times it: one probe call, warm-up calls for at least warm_ms of GPU time
    (warmup at least), then blocks of reps calls or more, each lasting block_ms at least; the median block."""

    def __init__(self, torch, spec):
        self.torch = torch
        self.warmup = int(spec.get("warmup", 2))
        self.trials = int(spec.get("trials", 5))
        self.warm_ms = float(spec.get("warm_ms", 20))
        self.block_ms = float(spec.get("block_ms", 50))

    def ms(self, fn, reps):
        torch = self.torch
        a = torch.cuda.Event(enable_timing=True)
        b = torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        probe = max(a.elapsed_time(b), 1e-3)
        warm = min(max(self.warmup, int(self.warm_ms / probe) + 1), 1000)
        reps = min(max(reps, int(self.block_ms / probe) + 1), 1000)
        for _ in range(warm):
            fn()
        got = []
        for _ in range(self.trials):
            a.record()
            for _ in range(reps):
                fn()
            b.record()
            b.synchronize()
            got.append(a.elapsed_time(b) / reps)
        return statistics.median(got)


def rooflines(torch, tm, spec, fig):
    """copy_GBps (bytes read + written) and gemm_TFLOPs (n^3 bf16), as calibrate's rooflines."""
    dev = "cuda"
    nbytes = int(spec["copy_bytes"])
    src = torch.ones(nbytes, dtype=torch.uint8, device=dev)
    dst = torch.empty_like(src)
    ms = tm.ms(lambda: dst.copy_(src), int(spec.get("copy_reps", 10)))
    fig["copy_GBps"] = 2.0 * nbytes / (ms * 1e-3) / 1e9
    del src, dst
    n = int(spec["gemm_n"])
    a = torch.randn(n, n, dtype=torch.bfloat16, device=dev) * 0.01
    b = torch.randn(n, n, dtype=torch.bfloat16, device=dev) * 0.01
    c = torch.empty(n, n, dtype=torch.bfloat16, device=dev)
    ms = tm.ms(lambda: torch.mm(a, b.t(), out=c), int(spec.get("gemm_reps", 10)))
    fig["gemm_TFLOPs"] = 2.0 * n * n * n / (ms * 1e-3) / 1e12


def swiglu_experts(torch, x, w13t, w2t, offs, ffn):
    """gate|up grouped GEMM, silu(gate) * up, down grouped GEMM: the expert phase calibrate times.

    torch._grouped_mm(mat_a (rows, K) row-major, mat_b (G, K, N), offs=int32 cumulative row ends): the weights
    are kept (G, N, K) contiguous, as moebench keeps them (output features by input features), and passed
    transposed, the layout PyTorch's tests use; every stride is a multiple of 16 bytes since H and F are
    multiples of 8."""
    h = torch._grouped_mm(x, w13t, offs=offs, out_dtype=torch.bfloat16)
    a = torch.nn.functional.silu(h[:, :ffn]) * h[:, ffn:]
    return torch._grouped_mm(a, w2t, offs=offs, out_dtype=torch.bfloat16)


def expert_weights(torch, g, hidden, ffn):
    w13 = torch.randn(g, 2 * ffn, hidden, dtype=torch.bfloat16, device="cuda").mul_(0.02)
    w2 = torch.randn(g, hidden, ffn, dtype=torch.bfloat16, device="cuda").mul_(0.02)
    return w13, w2


def check_group(torch, x, w13, out, offs_host, e, ffn):
    """expert e's rows of the gate|up output against one plain matmul: the offsets mean what we think."""
    lo = offs_host[e - 1] if e else 0
    hi = offs_host[e]
    if hi == lo:
        return
    ref = (x[lo:hi].float() @ w13[e].float().t())
    err = (out[lo:hi].float() - ref).abs().max().item() / max(ref.abs().max().item(), 1e-30)
    if err > 2e-2:
        raise RuntimeError("torch._grouped_mm disagrees with matmul on expert %d (relative error %.3g)" % (e, err))


def experts(torch, tm, sh, fig, reps):
    """One calibrate shape: experts_<name>_grouped_TFLOPs over gate|up + act + down (calibrate's FLOPs: 6 R H F),
    and each grouped GEMM alone in ms."""
    counts = [int(c) for c in sh["counts"]]
    hidden, ffn, g = int(sh["hidden"]), int(sh["ffn"]), len(counts)
    rows = sum(counts)
    ends, s = [], 0
    for c in counts:
        s += c
        ends.append(s)
    offs = torch.tensor(ends, dtype=torch.int32, device="cuda")
    # the values calibrate gives its experts: uniform in [-1, 1], the weights times 0.02 (a GEMM at the power
    # limit runs at a clock that depends on the bits it multiplies, so both sides get the same kind)
    x = torch.rand(rows, hidden, dtype=torch.bfloat16, device="cuda").mul_(2).sub_(1)
    w13 = torch.rand(g, 2 * ffn, hidden, dtype=torch.bfloat16, device="cuda").mul_(2).sub_(1).mul_(0.02)
    w2 = torch.rand(g, hidden, ffn, dtype=torch.bfloat16, device="cuda").mul_(2).sub_(1).mul_(0.02)
    w13t, w2t = w13.transpose(-2, -1), w2.transpose(-2, -1)
    h = torch._grouped_mm(x, w13t, offs=offs, out_dtype=torch.bfloat16)
    check_group(torch, x, w13, h, ends, 0, ffn)
    check_group(torch, x, w13, h, ends, g - 1, ffn)
    a = torch.nn.functional.silu(h[:, :ffn]) * h[:, ffn:]
    key = "experts_%s_grouped" % sh["name"]
    ms = tm.ms(lambda: swiglu_experts(torch, x, w13t, w2t, offs, ffn), reps)
    fig[key + "_TFLOPs"] = 6.0 * rows * hidden * ffn / (ms * 1e-3) / 1e12
    fig[key + "_gateup_ms"] = tm.ms(lambda: torch._grouped_mm(x, w13t, offs=offs, out_dtype=torch.bfloat16), reps)
    fig[key + "_down_ms"] = tm.ms(lambda: torch._grouped_mm(a, w2t, offs=offs, out_dtype=torch.bfloat16), reps)


def make_layer(torch, m):
    """A plain PyTorch MoE layer as the model computes it: router linear, softmax or sigmoid scores (DeepSeek-V3:
    selection bias, 8 groups keep the 4 with the best top-2 sums, top-8, normalised, x 2.5), argsort permute,
    grouped-GEMM swiglu experts, weights applied and index_add combine (in fp32, as moebench combines), plus
    the shared experts. Nothing in it reads the device from the host, so it captures into a CUDA graph."""
    F = torch.nn.functional
    T, H, Fd = int(m["tokens"]), int(m["hidden"]), int(m["ffn"])
    E, K = int(m["experts"]), int(m["topk"])
    groups, kgroups = int(m.get("groups", 1)), int(m.get("topk_groups", 1))
    sig, norm, scale = m["score"] == "sigmoid", bool(m["norm"]), float(m["scale"])
    dev, bf = "cuda", torch.bfloat16
    x = torch.randn(T, H, dtype=bf, device=dev)
    wg = torch.randn(E, H, dtype=bf, device=dev).mul_(0.02)
    bias = torch.randn(E, device=dev) * 0.01 if m.get("bias") else None
    w13, w2 = expert_weights(torch, E, H, Fd)
    w13t, w2t = w13.transpose(-2, -1), w2.transpose(-2, -1)
    fs = Fd * int(m.get("shared", 0))
    ws13 = torch.randn(2 * fs, H, dtype=bf, device=dev).mul_(0.02) if fs else None
    ws2 = torch.randn(H, fs, dtype=bf, device=dev).mul_(0.02) if fs else None
    experts_ids = torch.arange(E, device=dev)

    def route():
        logits = F.linear(x, wg).float()
        scores = logits.sigmoid() if sig else logits.softmax(dim=-1)
        sel = scores + bias if bias is not None else scores
        if groups > 1:
            gs = sel.view(T, groups, E // groups).topk(2, dim=-1).values.sum(dim=-1)
            keep = torch.zeros(T, groups, dtype=torch.bool, device=dev)
            keep.scatter_(1, gs.topk(kgroups, dim=-1).indices, True)
            keep = keep.unsqueeze(-1).expand(T, groups, E // groups).reshape(T, E)
            sel = sel.masked_fill(~keep, float("-inf"))
        idx = sel.topk(K, dim=-1).indices
        w = scores.gather(1, idx)
        if norm:
            w = w / (w.sum(dim=-1, keepdim=True) + 1e-20)
        return idx, w * scale

    def layer():
        idx, w = route()
        eid, order = idx.view(-1).sort(stable=True)
        offs = torch.searchsorted(eid, experts_ids, right=True).to(torch.int32)
        tok = order // K
        ys = swiglu_experts(torch, x.index_select(0, tok), w13t, w2t, offs, Fd)
        acc = torch.zeros(T, H, dtype=torch.float32, device=dev)
        if fs:
            hs = F.linear(x, ws13)
            acc += F.linear(F.silu(hs[:, :fs]) * hs[:, fs:], ws2).float()
        acc.index_add_(0, tok, ys.float() * w.view(-1)[order].unsqueeze(1))
        return acc.to(bf)

    parts = {"x": x, "route": route, "w13": w13, "w2": w2, "ws13": ws13, "ws2": ws2, "fs": fs, "ffn": Fd}
    return layer, parts


def layer_selfcheck(torch, m):
    """The layer at a small size against a per-expert loop in fp32 (same routing), and the group limit held:
    the relative error, raised on when the layer is wrong so that its timings are not taken for a layer's."""
    F = torch.nn.functional
    small = dict(m, tokens=64, hidden=256, ffn=128, experts=32)
    layer, p = make_layer(torch, small)
    y = layer().float()
    idx, w = p["route"]()
    groups, kgroups = int(m.get("groups", 1)), int(m.get("topk_groups", 1))
    if groups > 1:
        used = max(len(set(r)) for r in (idx // (32 // groups)).tolist())
        if used > kgroups:
            raise RuntimeError("a token's experts span %d groups, more than %d" % (used, kgroups))
    x, fd, fs = p["x"].float(), p["ffn"], p["fs"]
    ref = torch.zeros_like(y)
    for e in range(32):
        tok, slot = (idx == e).nonzero(as_tuple=True)
        if len(tok):
            h = x[tok] @ p["w13"][e].float().t()
            out = (F.silu(h[:, :fd]) * h[:, fd:]) @ p["w2"][e].float().t()
            ref.index_add_(0, tok, out * w[tok, slot].unsqueeze(1))
    if fs:
        hs = x @ p["ws13"].float().t()
        ref += (F.silu(hs[:, :fs]) * hs[:, fs:]) @ p["ws2"].float().t()
    err = ((y - ref).abs().max() / ref.abs().max()).item()
    if not err < 5e-2:
        raise RuntimeError("the layer disagrees with a per-expert loop: relative error %.3g" % err)
    return err


def layer_figures(torch, tm, m, fig, errs, checks, reps):
    """layer_<model>_eager_ms, then the same layer captured once and replayed: layer_<model>_graph_ms."""
    key = "layer_%s" % m["name"]
    checks[key] = layer_selfcheck(torch, m)
    layer = make_layer(torch, m)[0]
    fig[key + "_eager_ms"] = tm.ms(layer, reps)
    try:
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(3):
                layer()
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            layer()
        fig[key + "_graph_ms"] = tm.ms(graph.replay, reps)
    except Exception as e:  # the eager figure stands; say why the graph one is missing
        errs[key + "_graph_ms"] = "%s: %s" % (type(e).__name__, e)


def run_all(torch, spec):
    fig, errs, checks = {}, {}, {}
    tm = Timer(torch, spec)
    steps = [("rooflines", lambda: rooflines(torch, tm, spec, fig))]
    for sh in spec.get("experts", []):
        steps.append(("experts_%s" % sh["name"],
                      lambda sh=sh: experts(torch, tm, sh, fig, int(spec.get("experts_reps", 10)))))
    for m in spec.get("layers", []):
        steps.append(("layer_%s" % m["name"],
                      lambda m=m: layer_figures(torch, tm, m, fig, errs, checks, int(spec.get("layer_reps", 10)))))
    for name, step in steps:
        try:
            step()
        except Exception as e:  # one shape failing (memory, an unsupported layout) leaves the others
            errs[name] = "%s: %s" % (type(e).__name__, e)
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
    return fig, errs, checks


def main(argv):
    spec = load_spec(argv)
    try:
        import torch
    except Exception as e:
        print("torch not importable: %s" % e, file=sys.stderr)
        return 77
    if not torch.cuda.is_available():
        print("torch %s sees no CUDA device" % torch.__version__, file=sys.stderr)
        return 77
    if not hasattr(torch, "_grouped_mm"):
        print("torch %s has no torch._grouped_mm" % torch.__version__, file=sys.stderr)
        return 77
    torch.manual_seed(7)
    fig, errs, checks = run_all(torch, spec)
    env = {
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "device": torch.cuda.get_device_name(),
        "timing": "median of %d trials of the mean of back-to-back calls after %d warm-ups, CUDA events, L2 not flushed"
        % (int(spec.get("trials", 5)), int(spec.get("warmup", 2))),
        "layer_check_rel_err": checks,
    }
    json.dump({"figures": fig, "env": env, "errors": errs}, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
