"""results.json -> PNG plots; a plot whose data the run did not collect is skipped."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on a GPU host or in CI
import matplotlib.pyplot as plt  # noqa: E402

from .report import acceptance, series  # noqa: E402


def _lines(runs: list[dict], sweep: str, x: str, y=lambda r: r["total_tok_s"]) -> dict[str, list[tuple[float, float]]]:
    lines = defaultdict(list)
    for r in runs:
        if r.get("sweep", "concurrency") == sweep and r["dataset"] == "synthetic":
            lines[series(r)].append((r[x], y(r)))
    return {mode: sorted(points) for mode, points in lines.items() if all(v is not None for _, v in points)}


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _line_plot(lines, path: Path, xlabel: str, title: str, more=None) -> Path | None:
    """``more``: (lines, ylabel, title) of a second panel beside the first."""
    if not lines:
        return None
    panels = [(lines, "output tokens/s (all requests)", title)] + ([more] if more and more[0] else [])
    fig, axes = plt.subplots(1, len(panels), figsize=(7 * len(panels), 4.5), squeeze=False)
    for ax, (panel, ylabel, panel_title) in zip(axes[0], panels):
        _draw(ax, panel, xlabel, ylabel, panel_title)
    return _save(fig, path)


def _draw(ax, lines, xlabel: str, ylabel: str, title: str) -> None:
    for mode, points in lines.items():
        xs, ys = zip(*points)
        ax.plot(xs, ys, marker="o", label=mode)
    xs = sorted({x for points in lines.values() for x, _ in points})
    if len(xs) > 1:
        ax.set_xscale("log", base=2)
    ax.set_xticks(xs, [f"{x:g}" for x in xs])  # the measured levels, not powers of two
    ax.minorticks_off()
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    ax.grid(alpha=0.3)
    ax.legend()


def throughput_vs_concurrency(runs, out_dir: Path) -> Path | None:
    return _line_plot(_lines(runs, "concurrency", "concurrency"), out_dir / "throughput_vs_concurrency.png",
                      "concurrency", "Throughput vs concurrency")


def throughput_vs_context(runs, out_dir: Path) -> Path | None:
    """End to end (a long prompt's prefill dominates a short answer) and decode only (1 / TPOT)."""
    decode = _lines(runs, "context", "prompt_len", lambda r: 1e3 / r["tpot_ms"] if r["tpot_ms"] else None)
    return _line_plot(_lines(runs, "context", "prompt_len"), out_dir / "throughput_vs_context.png",
                      "context (prompt tokens)", "End to end vs context length, concurrency 1",
                      more=(decode, "decode tokens/s per request (1 / TPOT)", "Decode speed vs context length"))


def speedup_vs_tau(runs, out_dir: Path) -> Path | None:
    points = defaultdict(list)
    for r in runs:
        if r["algorithm"] != "AR" and r["speedup_vs_ar"] is not None:
            points[series(r)].append((r["tau"], r["speedup_vs_ar"]))
    if not points:
        return None
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for mode, pts in points.items():
        ax.scatter(*zip(*pts), label=mode)
    top = max(tau for pts in points.values() for tau, _ in pts)
    taus = [1.0, max(top, 2.0)]
    # Each step runs two passes (draft + verify) that cost about one AR step each when memory-bound.
    ax.plot(taus, [t / 2 for t in taus], "k--", label="two-pass ideal (tau / 2)")
    ax.axhline(1.0, color="grey", lw=0.8)
    ax.set(xlabel="tau (tokens per verify step)", ylabel="speedup vs AR (total tok/s)", title="Speedup vs tau")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    return _save(fig, out_dir / "speedup_vs_tau.png")


def acceptance_by_position(runs, out_dir: Path) -> Path | None:
    totals = acceptance(runs)
    if not totals:
        return None
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for (mode, dataset), (steps, counts) in totals.items():
        ax.plot(range(1, len(counts) + 1), [c / steps for c in counts], marker=".", label=f"{mode}, {dataset}")
    ax.set(xlabel="draft position", ylabel="acceptance rate (share of verify steps)", ylim=(0, 1.02),
           title="Acceptance by draft position")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    return _save(fig, out_dir / "acceptance_by_position.png")


def make_plots(results: dict, out_dir: str | Path) -> list[Path]:
    out_dir, runs = Path(out_dir), results.get("runs", [])
    made = [plot(runs, out_dir) for plot in (throughput_vs_concurrency, speedup_vs_tau, acceptance_by_position,
                                            throughput_vs_context)]
    return [p for p in made if p is not None]
