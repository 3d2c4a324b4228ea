"""results.json -> markdown tables (what bench/throughput.py prints and writes as results.md).

    python -m bench.report bench/results/<run>/results.json
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict

from .engine_metrics import block_mix

MAX_POSITIONS = 16  # acceptance columns shown; results.json keeps them all
DASH = "–"


def _fmt(value, spec: str = "") -> str:
    if value is None:
        return DASH
    if isinstance(value, bool):
        return str(value)
    return format(value, spec)


def _table(headers: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _tau(run: dict) -> str:
    return f"{run['tau']:.2f}" + ("*" if not run.get("lossless", run["pinned_tau"] is None) else "")


def _equal(run: dict) -> str:
    if run["algorithm"] == "AR":
        return "ref"
    return _fmt(run["outputs_equal_ar"])


def _mode_cell(run: dict) -> str:
    """The mode column: the algorithm, and the attention backend when the run compared several."""
    backend = run.get("attention_backend")
    return run["algorithm"] + (f" [{backend}]" if backend else "")


def _speedup(run: dict) -> str:
    return DASH if run["speedup_vs_ar"] is None else f"{run['speedup_vs_ar']:.2f}x"


def series(run: dict) -> str:
    """The mode's label, plus its temperature when it sampled: one line of a plot, one acceptance row."""
    t = run.get("temperature") or 0
    return run["mode"] + (f", T={t:g}" if t else "")


def _sampled(runs: list[dict]) -> bool:
    return any(r.get("temperature") for r in runs)


def _with_t(headers: list[str], rows: list[list[str]], runs: list[dict]) -> tuple[list[str], list[str]]:
    """A T column after tau, when any run sampled; greedy-only tables keep their shape."""
    if not _sampled(runs):
        return headers, rows
    at = headers.index("tau") + 1
    return (headers[:at] + ["T"] + headers[at:],
            [row[:at] + [f"{r.get('temperature') or 0:g}"] + row[at:] for row, r in zip(rows, runs)])


def _sampling(args: dict) -> str:
    temps = args.get("temperature", 0.0)
    temps = temps if isinstance(temps, list) else [temps]
    if not any(temps):
        return "Greedy"
    filters = [f"top_p {args['top_p']:g}" if args.get("top_p", 1.0) < 1 else None,
               f"top_k {args['top_k']}" if args.get("top_k", -1) > 0 else None]
    shown = ", ".join(f"{t:g}" for t in temps)
    return (f"Temperature {shown} (0: greedy" + "".join(f", {f}" for f in filters if f)
            + "; sampled requests seeded by their index in the cell, so their outputs are not compared token-wise)")


def _model(m: dict) -> str:
    """The shape in a few words; takes our describe() keys or a raw HF config's."""
    def get(key, hf_key):
        return m.get(key, m.get(hf_key))

    layers, heads = get("num_layers", "num_hidden_layers"), get("num_heads", "num_attention_heads")
    kv = get("num_kv_heads", "num_key_value_heads")
    shape = [m.get("backbone"), m.get("hidden_size") and f"hidden {m['hidden_size']}", layers and f"{layers} layers",
             heads and f"{heads}/{kv} heads", m.get("head_dim") and f"head dim {m['head_dim']}",
             m.get("vocab_size") and f"vocab {m['vocab_size']}"]
    shape = ", ".join(s for s in shape if s)
    weights = f", weights {m['weights']}" if m.get("weights") else ""
    return f"model {m.get('name', '?')}" + (f" ({shape})" if shape else "") + weights


def header(results: dict) -> str:
    env, args = results.get("env", {}), results.get("args", {})
    hardware = env.get("hardware", "unknown hardware")
    if env.get("threads") and str(env.get("device", "cpu")).startswith("cpu"):
        hardware += f" ({env['threads']} torch threads)"
    parts = [hardware, ", ".join(f"{k} {v}" for k, v in env.get("versions", {}).items() if v), _model(env.get("model", {})),
             f"dtype {env.get('dtype', '?')}", f"attention {env.get('attention_backend', '?')}", env.get("engine")]
    when = [results.get("created"), results.get("git_commit") and f"commit {results['git_commit'][:12]}"
            + (" + uncommitted changes" if results["git_commit"].endswith("-dirty") else "")]
    lines = [f"# Orthrus throughput ({env.get('backend', args.get('backend', '?'))} backend)", "",
             "; ".join(p for p in parts if p) + ".", "", ". ".join([f"{_sampling(args)}, EOS ignored"] + [w for w in when if w]) + "."]
    if results.get("error"):
        lines += ["", f"**Incomplete run**: {results['error']}"]
    return "\n".join(lines)


def _spread(r: dict) -> str:
    """min-max total tok/s over the cell's runs (--repeats), and the width relative to the median."""
    tok = r.get("repeat_tok_s") or []
    if len(tok) < 2:
        return DASH
    return f"{min(tok):,.0f}-{max(tok):,.0f} ({(max(tok) - min(tok)) / r['total_tok_s']:.0%})"


def concurrency_table(runs: list[dict], args: dict) -> str:
    repeated = any(len(r.get("repeat_tok_s") or []) > 1 for r in runs)
    rows = [[_mode_cell(r), _fmt(r["block_size"]), _tau(r), str(r["concurrency"]), str(r["num_requests"]),
             f"{r['total_tok_s']:,.1f}", *([_spread(r)] if repeated else []), f"{r['per_request_tok_s']:,.1f}",
             f"{r['ttft_ms']:.1f}", f"{r['tpot_ms']:.2f}", _speedup(r), _equal(r)] for r in runs]
    title = (f"## Throughput vs concurrency\n\nSynthetic prompts, {args.get('prompt_len', '?')} tokens in, "
             f"{args.get('out_len', '?')} out, closed loop.")
    if repeated:
        title += (f" Every cell ran {args.get('repeats')} times on the same engine with fresh prompts: each row is "
                  "the median run (speedups are median over median), \"spread\" the lowest and highest total tok/s "
                  "and their gap relative to the median (the noise of that cell).")
    return title + "\n\n" + _table(*_with_t(["mode", "B", "tau", "concurrency", "requests", "total tok/s",
                                              *(["spread"] if repeated else []), "per-request tok/s", "TTFT ms",
                                              "TPOT ms", "speedup vs AR", "outputs equal"], rows, runs))


def context_table(runs: list[dict], args: dict) -> str:
    rows = [[_mode_cell(r), _fmt(r["block_size"]), _tau(r), f"{r['prompt_len']:.0f}", str(r["num_requests"]),
             f"{r['total_tok_s']:,.1f}", f"{r['ttft_ms']:.1f}", f"{r['tpot_ms']:.2f}", _speedup(r), _equal(r)]
            for r in runs]
    title = (f"## Context length\n\nConcurrency 1, synthetic prompts of the given length, "
             f"{args.get('context_out_len', '?')} tokens out.")
    return title + "\n\n" + _table(*_with_t(["mode", "B", "tau", "context", "requests", "tok/s", "TTFT ms", "TPOT ms",
                                              "speedup vs AR", "outputs equal"], rows, runs))


def step_cost_table(runs: list[dict]) -> str | None:
    """Decode step cost against AR's in the same cell, and how much of the ideal the run reached.

    step = TPOT x tau (one verify step makes tau tokens). ideal = tau x AR step / step, the speedup a
    run would show if prefill and request overheads were free; efficiency = speedup vs AR / ideal.
    The two-pass bound tau / 2 is what a step costing two AR steps would give.
    """
    key = lambda r: (r.get("sweep"), r["dataset"], r["concurrency"], r["prompt_len"], r.get("temperature"))  # noqa: E731
    ar = {(key(r), r["mode"]): r for r in runs if r["algorithm"] == "AR" and r["tpot_ms"] > 0}
    rows, shown = [], []
    for r in runs:
        # The AR run the speedup refers to (the fastest of the cell where several backends ran).
        base = ar.get((key(r), r.get("ar_reference") or "AR"))
        if r["algorithm"] == "AR" or base is None or not r["tpot_ms"]:
            continue
        step = r["tpot_ms"] * r["tau"]
        ideal = r["tau"] * base["tpot_ms"] / step
        speedup = r["speedup_vs_ar"]
        rows.append([_mode_cell(r), _fmt(r["block_size"]), _tau(r), f"{r['concurrency']}",
                     f"{r['prompt_len']:.0f}", f"{step:.2f}", f"{base['tpot_ms']:.2f}", f"{step / base['tpot_ms']:.2f}",
                     f"{ideal:.2f}x", _fmt(speedup and speedup / ideal, ".2f"),
                     _fmt(speedup and speedup / (r["tau"] / 2), ".2f")])
        shown.append(r)
    if not rows:
        return None
    return ("## Step cost and efficiency\n\nStep = TPOT x tau (ms per verify step); ideal = tau x AR step / step "
            "(the speedup with free prefill); efficiency = speedup vs AR / ideal; vs two-pass = speedup / (tau / 2).\n\n"
            + _table(*_with_t(["mode", "B", "tau", "concurrency", "prompt", "step ms", "AR step ms",
                                "step / AR step", "ideal", "efficiency", "vs two-pass"], rows, shown)))


def dataset_table(runs: list[dict], args: dict) -> str:
    rows = [[_mode_cell(r), _fmt(r["block_size"]), _tau(r), r["dataset"], str(r["num_requests"]),
             str(r["concurrency"]), f"{r['prompt_len']:.0f}", f"{r['total_tok_s']:,.1f}", _speedup(r), _equal(r)]
            for r in runs]
    title = f"## Datasets\n\nChat-templated questions, {args.get('out_len', '?')} tokens out."
    return title + "\n\n" + _table(*_with_t(["mode", "B", "tau", "dataset", "requests", "concurrency", "mean prompt",
                                              "total tok/s", "speedup vs AR", "outputs equal"], rows, runs))


def memory_table(memory: dict) -> str:
    modes = memory.get("modes", {})
    context = memory.get("context", "?")
    rows = [[label, _fmt(m.get("kv_pool_tokens"), ","), _fmt(m.get("max_running_requests")),
             _fmt(m.get("admitted_at_context"))] for label, m in modes.items()]
    note = ("Admitted at context: requests of that many prompt tokens (plus the output and one verify block) "
            "that fit at once, derived from the pool size, not measured"
            + ("; rows are preallocated per request" if any("kv_slot_tokens" in m for m in modes.values()) else "")
            + ".")
    return "## Memory\n\n" + _table(["mode", "KV pool tokens", "max running requests",
                                     f"admitted at context {context} (derived)"], rows) + "\n\n" + note


def acceptance(runs: list[dict]) -> dict[tuple[str, str], tuple[int, list[int]]]:
    """(mode and temperature, prompt set) -> (verify steps, accepted count per draft position), summed
    over its runs."""
    totals: dict[tuple[str, str], tuple[int, list[int]]] = {}
    for r in runs:
        if r["verify_steps"]:
            key = (series(r), r["dataset"])
            steps, counts = totals.get(key, (0, [0] * len(r["accepted_per_position"])))
            totals[key] = (steps + r["verify_steps"], [a + b for a, b in zip(counts, r["accepted_per_position"])])
    return totals


def acceptance_table(runs: list[dict]) -> str | None:
    """Per mode and prompt set: the share of verify steps whose draft i was accepted."""
    totals = acceptance(runs)
    if not totals:
        return None
    width = min(MAX_POSITIONS, max(len(counts) for _, counts in totals.values()))
    rows = []
    for (mode, dataset), (n, counts) in totals.items():
        rates = [f"{a / n:.2f}" for a in counts[:width]]
        rows.append([mode, dataset, str(n), f"{1 + sum(counts) / n:.2f}"] + rates + [""] * (width - len(rates)))
    more = " (further positions in results.json)" if width == MAX_POSITIONS else ""
    return ("## Acceptance by draft position\n\nShare of verify steps that accepted draft i, over every run of the "
            f"mode on that prompt set{more}.\n\n"
            + _table(["mode", "prompts", "verify steps", "tau"] + [str(i + 1) for i in range(width)], rows))


def block_size_table(runs: list[dict]) -> str | None:
    """The block sizes each adaptive run's steps took: share of request-steps per B (chosen from tau and
    step cost per batch size; a fixed B has one entry and is not shown)."""
    shown = [r for r in runs if len(r.get("steps_by_block_size") or {}) > 1 or
             (r.get("steps_by_block_size") and "adaptive" in r["algorithm"])]
    if not shown:
        return None
    rows = []
    for r in shown:
        steps = r["steps_by_block_size"]
        rows.append([_mode_cell(r), series(r).removeprefix(r["mode"]).lstrip(", ") or "greedy", r["dataset"],
                     str(r["concurrency"]), f"{r['prompt_len']:.0f}", _tau(r), str(sum(steps.values())),
                     block_mix(steps)])
    return ("## Block sizes chosen\n\nShare of request-steps per block size (B=1: a plain AR step), from "
            "the engine's own counters over the run.\n\n"
            + _table(["mode", "sampling", "prompts", "concurrency", "prompt", "tau", "request-steps", "block sizes"],
                     rows))


def render(results: dict, images: list[str] = ()) -> str:
    runs, args = results.get("runs", []), results.get("args", {})
    by_sweep = defaultdict(list)
    for r in runs:
        by_sweep[r.get("sweep", "concurrency")].append(r)
    sections = [header(results)]
    if by_sweep["concurrency"]:
        sections.append(concurrency_table(by_sweep["concurrency"], args))
    if by_sweep["context"]:
        sections.append(context_table(by_sweep["context"], args))
    if by_sweep["dataset"]:
        sections.append(dataset_table(by_sweep["dataset"], args))
    steps = step_cost_table([r for r in runs if r.get("sweep", "concurrency") != "dataset"])
    if steps:
        sections.append(steps)
    if results.get("memory", {}).get("modes"):
        sections.append(memory_table(results["memory"]))
    acceptance = acceptance_table(runs)
    if acceptance:
        sections.append(acceptance)
    blocks = block_size_table(runs)
    if blocks:
        sections.append(blocks)
    notes = [("tau: tokens per verify step, bonus included (1 for AR). Speedup vs AR: total tok/s over AR's in "
              "the same cell. Outputs equal: every request's tokens are AR's (lossless modes only).")]
    if len({r.get("attention_backend") for r in runs if r["algorithm"] == "AR"}) > 1:
        notes.append("Several attention backends ran: every mode at each ([backend] in its name); every speedup and "
                     "output comparison is against the fastest AR of its cell.")
    if any(not r.get("lossless", r["pinned_tau"] is None) for r in runs):
        notes.append("\\* acceptance simulated (tau pinned: SGLANG_SIMULATE_ACC_LEN, every request the same length; "
                     "'acceptance r/draft': ORTHRUS_SIMULATE_ACCEPT_RATE, each draft accepted with probability r "
                     "after its predecessors): these rows are NOT lossless and their outputs are not compared; "
                     "they measure speed at that acceptance only.")
    sections.append("\n\n".join(notes))
    sections += [f"![{name}]({name})" for name in images]
    return "\n\n".join(sections) + "\n"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m bench.report RESULTS.json", file=sys.stderr)
        return 2
    with open(argv[0], encoding="utf-8") as f:
        print(render(json.load(f)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
