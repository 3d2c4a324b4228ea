"""The tau curve: held-out tau against training steps, and the last eval's acceptance per draft position.

matplotlib is optional (the quickstart install has none): without it there is no curve, and training
goes on (the numbers are in results.json either way).
"""

from __future__ import annotations

from pathlib import Path


NO_MATPLOTLIB = "tau curve not drawn: matplotlib is not installed (pip install matplotlib); held-out tau is in {}"


def plot_tau_curve(history: list[dict], path: str | Path, *, title: str = "held-out tau") -> Path | None:
    """Draw the curve into ``path``; None (nothing drawn) without matplotlib."""
    try:
        import matplotlib
    except ModuleNotFoundError as exc:
        if exc.name != "matplotlib":
            raise
        return None

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = sorted({k for record in history for k in record if k.startswith("B")}, key=lambda k: int(k[1:]))
    fig, (curve, positions) = plt.subplots(1, 2, figsize=(11, 4))
    for key in sizes:
        points = [(r["step"], r[key]["tau"]) for r in history if key in r]
        curve.plot(*zip(*points), marker="o", label=f"B={key[1:]}")
    curve.set(xlabel="training step", ylabel="tau (tokens per decode step)", title=title)
    curve.grid(alpha=0.3)
    curve.legend()
    last = history[-1]
    for key in sizes:
        if key in last:
            rates = last[key]["acceptance_per_position"]
            positions.plot(range(1, len(rates) + 1), rates, marker=".", label=f"B={key[1:]}")
    positions.set(xlabel="draft position k", ylabel="fraction of steps accepting draft k", ylim=(0, 1),
                  title=f"acceptance by position, step {last['step']}")
    positions.grid(alpha=0.3)
    positions.legend()
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
