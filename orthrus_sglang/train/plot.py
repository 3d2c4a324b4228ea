"""The tau curve: held-out tau against training steps, and the last eval's acceptance per draft position.

matplotlib is optional (the quickstart install has none): without it there is no curve, and training
goes on (the numbers are in results.json either way).
"""

from __future__ import annotations

import re
from pathlib import Path


EVAL_KEY = re.compile(r"^(?:(?P<set>[^:]+):)?B(?P<b>\d+)$")
NO_MATPLOTLIB = "tau curve not drawn: matplotlib is not installed (pip install matplotlib); held-out tau is in {}"


def curve_labels(keys: list[str], main_set: str | None = None) -> dict[str, str]:
    """Legend label of each history key: "B16" -> "broad B=16" (the first set's name), "ood:B16" ->
    "ood B=16"; a JSONL path is named by its file's stem."""
    labels = {}
    for key in keys:
        m = EVAL_KEY.match(key)
        name = m["set"] or main_set or ""
        labels[key] = f"{Path(name).stem if name.endswith('.jsonl') else name} B={m['b']}".strip()
    return labels


def plot_tau_curve(history: list[dict], path: str | Path, *, title: str = "held-out tau",
                   main_set: str | None = None) -> Path | None:
    """Draw the curve into ``path``; None (nothing drawn) without matplotlib. ``main_set``: the name of
    the first prompt set (its keys are bare "B16"), for the legend."""
    try:
        import matplotlib
    except ModuleNotFoundError as exc:
        if exc.name != "matplotlib":
            raise
        return None

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = {k: m for r in history for k in r if (m := EVAL_KEY.match(k))}  # "B16", "ood:B16" (setup.eval_key)
    sizes = sorted(keys, key=lambda k: (keys[k]["set"] or "", int(keys[k]["b"])))
    label = curve_labels(sizes, main_set)
    fig, (curve, positions) = plt.subplots(1, 2, figsize=(11, 4))
    for key in sizes:
        points = [(r["step"], r[key]["tau"]) for r in history if key in r]
        curve.plot(*zip(*points), marker="o", linestyle="--" if keys[key]["set"] else "-", label=label[key])
    curve.set(xlabel="training step", ylabel="tau (tokens per decode step)", title=title)
    curve.grid(alpha=0.3)
    curve.legend()
    last = history[-1]
    for key in sizes:
        if key in last:
            rates = last[key]["acceptance_per_position"]
            positions.plot(range(1, len(rates) + 1), rates, marker=".", label=label[key])
    positions.set(xlabel="draft position k", ylabel="fraction of steps accepting draft k", ylim=(0, 1),
                  title=f"acceptance by position, step {last['step']}")
    positions.grid(alpha=0.3)
    positions.legend()
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
