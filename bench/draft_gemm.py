"""The draft pass's GEMMs, one variant of its weights against another (issue 21's table).

    python -m bench.draft_gemm                                  # Qwen3-8B shape, M = 16..1024, GPU
    python -m bench.draft_gemm --variants bf16,w8a8 --m 16,64 --out docs/bench/<dir>/draft_gemm
    python -m bench.draft_gemm --variants bf16,w8a8,marlin-fp8,marlin-int4   # Marlin: see below

For each GEMM the draft pass runs (diffusion qkv and o projections, MLP gate_up and down, lm_head)
and each M (rows: concurrency x block size), the time of one call in microseconds (median over
CUDA-graph replays of --calls calls each, so launch gaps are not counted) and the output's
relative error against bf16 (Frobenius norm of the difference over that of the bf16 output), then
the draft pass's GEMMs in all (each layer's four times the layer count, plus lm_head). Variants:

- ``bf16``: the checkpoint's weights, ``torch.nn.functional.linear``.
- ``fp8-torch``: the fp8 path before the fused kernels: per-token quantisation in PyTorch ops,
  then ``torch._scaled_mm`` (orthrus_sglang/fp8.py without kernels).
- ``w8a8``: what ``ORTHRUS_DRAFT_WEIGHTS=fp8`` runs in SGLang: SGLang's per-token quantisation kernel
  and sgl-kernel's CUTLASS ``fp8_scaled_mm`` (fp8.py with compat.fp8_w8a8_kernels).
- ``marlin-fp8`` (w8a16) and ``marlin-int4`` (w4a16, groups of 128, round to nearest: what
  ``ORTHRUS_DRAFT_WEIGHTS=int4`` runs): SGLang's Marlin weight-only GEMMs with bf16 activations.
  Marlin is JIT-compiled on first use, which took about 6 minutes on a cold GPU host; the first
  call's time (quantisation, packing, compilation) is reported as ``compile_s``. (``marlin-fp8``
  has not run on a GPU yet; ``marlin-int4``'s kernel path is tests/gpu/test_draft_kernels_gpu.py's.)
- ``int4-emulated``: the int4 arithmetic dequantised into a bf16 matmul (what a CPU runs).

Weights and activations are random (normal, weights scaled like a trained model's); the errors
are of the kernels' arithmetic on them, not of a model's drafts (tau is measured elsewhere).
Results go to --out as draft_gemm.json and draft_gemm.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from bench.shapes import SHAPES
from orthrus_sglang.draft_weights import draft_gemm_shapes

VARIANTS = ("bf16", "fp8-torch", "w8a8", "marlin-fp8", "marlin-int4", "int4-emulated")
DEFAULT_VARIANTS = ("bf16", "fp8-torch", "w8a8")


@dataclass(frozen=True)
class Gemm:
    name: str
    n: int  # output features
    k: int  # input features
    per_pass: int  # how many times one draft pass runs it


def draft_gemms(shape: dict) -> list[Gemm]:
    """The GEMMs of one draft pass of a Qwen3/Llama-shaped Orthrus model."""
    return [Gemm(*gemm) for gemm in draft_gemm_shapes(shape)]


# ---- variants: prepare(weight [N, K] in the activation dtype) -> (x [M, K] -> y [M, N]) -----------
def _bf16(w: torch.Tensor) -> Callable:
    return lambda x: torch.nn.functional.linear(x, w)


def _fp8(kernels) -> Callable:
    from orthrus_sglang.fp8 import fp8_linear, path_for, prepare_for, quantize_weight

    def prepare(w: torch.Tensor) -> Callable:
        q = quantize_weight(w, kernels=kernels)
        prepare_for(q, w.dtype)
        expected = "emulated" if not w.is_cuda else ("scaled_mm" if kernels is None else kernels.name)
        if path_for(q, w.dtype) != expected:
            raise RuntimeError(f"fp8 path {path_for(q, w.dtype)!r} where {expected!r} was asked for")
        return lambda x: fp8_linear(x, q)
    return prepare


def _marlin_fp8(w: torch.Tensor) -> Callable:
    """Per-channel fp8 weights in Marlin's layout (as SGLang 0.5.17's marlin_quant_fp8_torch packs them)."""
    from orthrus_sglang.sgl import compat

    n, k = w.shape
    scales = (w.abs().amax(dim=1, keepdim=True).float() / 448.0).clamp(min=1e-12)  # [N, 1]
    fp8 = (w.float() / scales).clamp(-448.0, 448.0).to(torch.float8_e4m3fn)
    packed = compat.pack_fp8_to_int32(fp8, False).T.contiguous()
    qweight = compat.gptq_marlin_repack(b_q_weight=packed, perm=torch.empty(0, dtype=torch.int, device=w.device),
                                        size_k=k, size_n=n, num_bits=8)
    marlin_scales = compat.marlin_permute_scales(s=scales.to(w.dtype).T, size_k=k, size_n=n, group_size=-1)
    marlin_scales = compat.fp8_fused_exponent_bias_into_scales(marlin_scales)
    workspace = compat.marlin_make_workspace(w.device)
    return lambda x: compat.apply_fp8_marlin_linear(x, qweight, marlin_scales, workspace, n, k, None)


def _int4(kernels) -> Callable:
    """What ORTHRUS_DRAFT_WEIGHTS=int4 runs (int4.py): round-to-nearest groups of 128, Marlin w4a16
    where ``kernels`` is SGLang's Marlin (else the emulation)."""
    from orthrus_sglang.int4 import int4_linear, path_for, prepare_for, quantize_int4

    def prepare(w: torch.Tensor) -> Callable:
        q = quantize_int4(w, kernels=kernels)
        prepare_for(q, w.dtype)
        if kernels is not None and path_for(q, w.dtype) != kernels.name:
            raise RuntimeError(f"Marlin does not take a {tuple(w.shape)} weight")
        return lambda x: int4_linear(x, q)
    return prepare


def variant(name: str, device: torch.device) -> Callable:
    if name == "bf16":
        return _bf16
    if name == "fp8-torch":
        return _fp8(None)
    if name == "w8a8":
        from orthrus_sglang.sgl.compat import fp8_w8a8_kernels

        kernels = fp8_w8a8_kernels(device)
        if kernels is None:
            raise SystemExit("w8a8 needs a CUDA GPU of compute capability 8.9+ and SGLang's kernels")
        return _fp8(kernels)
    if name in ("marlin-fp8", "marlin-int4"):
        if device.type != "cuda":
            raise SystemExit(f"{name} needs a CUDA GPU")
        if name == "marlin-fp8":
            return _marlin_fp8
        from orthrus_sglang.sgl.compat import int4_marlin_kernels

        return _int4(int4_marlin_kernels(device))
    if name == "int4-emulated":
        return _int4(None)
    raise SystemExit(f"unknown variant {name!r}; known: {', '.join(VARIANTS)}")


# ---- timing -----------------------------------------------------------------------------------
def time_call(fn: Callable, x: torch.Tensor, calls: int, replays: int) -> float:
    """Microseconds per call: median over replays of a CUDA graph of ``calls`` calls (on a CPU,
    the median of direct calls)."""
    if x.device.type != "cuda":
        samples = []
        for _ in range(replays):
            start = time.perf_counter()
            fn(x)
            samples.append((time.perf_counter() - start) * 1e6)
        return statistics.median(samples)
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):  # warm-up off the default stream, as capture requires
        for _ in range(3):
            fn(x)
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for _ in range(calls):
            fn(x)
    samples = []
    for _ in range(replays):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        graph.replay()
        end.record()
        end.synchronize()
        samples.append(start.elapsed_time(end) * 1e3 / calls)
    del graph
    return statistics.median(samples)


def relative_error(y: torch.Tensor, ref: torch.Tensor) -> float:
    return float((y.float() - ref.float()).norm() / ref.float().norm().clamp(min=1e-30))


def run(gemms: list[Gemm], ms: list[int], variants: list[str], device: torch.device, dtype: torch.dtype,
        calls: int, replays: int, seed: int = 0, log=print) -> dict:
    gen = torch.Generator(device="cpu").manual_seed(seed)
    results: dict = {"gemms": [g.__dict__ for g in gemms], "m": ms, "variants": variants, "us": {}, "rel_err": {},
                     "compile_s": {}}
    prepares = {v: variant(v, device) for v in variants}
    for g in gemms:
        w = (torch.randn(g.n, g.k, generator=gen) * g.k ** -0.5).to(device=device, dtype=dtype)
        xs = {m: torch.randn(m, g.k, generator=gen).to(device=device, dtype=dtype) for m in ms}
        refs = {m: torch.nn.functional.linear(xs[m], w) for m in ms}
        for v in variants:
            start = time.perf_counter()
            fn = prepares[v](w)
            fn(xs[ms[0]])  # the first call compiles what is JIT-compiled (Marlin)
            if device.type == "cuda":
                torch.cuda.synchronize()
            results["compile_s"].setdefault(v, 0.0)
            results["compile_s"][v] += time.perf_counter() - start
            for m in ms:
                us = time_call(fn, xs[m], calls, replays)
                err = relative_error(fn(xs[m]), refs[m])
                results["us"].setdefault(v, {}).setdefault(g.name, {})[str(m)] = us
                results["rel_err"].setdefault(v, {}).setdefault(g.name, {})[str(m)] = err
                log(f"[draft_gemm] {g.name} {g.n}x{g.k} M={m} {v}: {us:.1f} us (rel. error {err:.3f})")
            del fn
        del w, xs, refs
        if device.type == "cuda":
            torch.cuda.empty_cache()
    results["pass_ms"] = {v: {str(m): sum(results["us"][v][g.name][str(m)] * g.per_pass for g in gemms) / 1e3
                              for m in ms} for v in variants}
    return results


def markdown(results: dict, title: str) -> str:
    variants, ms = results["variants"], results["m"]
    lines = [f"# {title}", "",
             "Microseconds per GEMM call (median of CUDA-graph replays); in brackets, the output's relative "
             "error against bf16. Last row of each M: the draft pass's GEMMs in all, in ms.", ""]
    for m in ms:
        lines += [f"## M = {m}", "", "| GEMM (N x K) | " + " | ".join(variants) + " |",
                  "|---|" + "---|" * len(variants)]
        for g in results["gemms"]:
            cells = []
            for v in variants:
                us, err = results["us"][v][g["name"]][str(m)], results["rel_err"][v][g["name"]][str(m)]
                cells.append(f"{us:.1f}" if v == "bf16" else f"{us:.1f} ({err:.3f})")
            lines.append(f"| {g['name']} {g['n']}x{g['k']} | " + " | ".join(cells) + " |")
        best = min(results["pass_ms"][v][str(m)] for v in variants)
        cells = [(f"**{results['pass_ms'][v][str(m)]:.2f}**" if results["pass_ms"][v][str(m)] == best
                  else f"{results['pass_ms'][v][str(m)]:.2f}") for v in variants]
        lines += ["| draft-pass GEMMs, ms | " + " | ".join(cells) + " |", ""]
    lines += ["First call (quantisation, packing, JIT compilation), s: "
              + ", ".join(f"{v} {results['compile_s'][v]:.1f}" for v in variants), ""]
    return "\n".join(lines)


def _ints(text: str) -> list[int]:
    return [int(t) for t in text.split(",") if t.strip()]


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.draft_gemm", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--shape", default="qwen3-8b", choices=sorted(SHAPES), help="model shape whose GEMMs to time")
    ap.add_argument("--m", type=_ints, default=[16, 64, 256, 1024],
                    help="rows per GEMM (concurrency x block size), comma-separated")
    ap.add_argument("--variants", default=",".join(DEFAULT_VARIANTS),
                    help=f"comma-separated, of {', '.join(VARIANTS)} (Marlin compiles on first use: minutes)")
    ap.add_argument("--calls", type=int, default=20, help="GEMM calls per CUDA-graph replay")
    ap.add_argument("--replays", type=int, default=30, help="replays to take the median of")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--out", type=Path, default=None, help="folder for draft_gemm.json and draft_gemm.md")
    args = ap.parse_args(argv)
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        ap.error(f"unknown variant(s) {', '.join(unknown)}; known: {', '.join(VARIANTS)}")
    if "bf16" not in variants:
        variants.insert(0, "bf16")  # the baseline of every error and ratio
    if any(m < 1 for m in args.m):
        ap.error("--m: every M must be at least 1")
    device = torch.device(args.device)
    results = run(draft_gemms(SHAPES[args.shape]), args.m, variants, device, torch.bfloat16, args.calls, args.replays)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    results["device"], results["shape"], results["torch"] = name, args.shape, torch.__version__
    title = f"Draft-pass GEMMs, {args.shape} shape, {name}, torch {torch.__version__}"
    text = markdown(results, title)
    print(text)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "draft_gemm.json").write_text(json.dumps(results, indent=1))
        (args.out / "draft_gemm.md").write_text(text)


if __name__ == "__main__":
    main()
