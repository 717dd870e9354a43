"""Rendering evaluation results: a text table and an accuracy-vs-cost PNG."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from router.evaluate import Summary


def _shares(share: dict[str, float], top: int = 3) -> str:
    best = sorted(share.items(), key=lambda kv: -kv[1])[:top]
    return ", ".join(f"{name} {value:.0%}" for name, value in best if value > 0)


def format_table(
    curve: Sequence[tuple[float, Summary]], baselines: dict[str, Summary], reference: str = "best single"
) -> str:
    """Rows for each alpha and each baseline: accuracy, cost, cost relative to ``reference``, shares."""
    ref_cost = baselines[reference].cost if reference in baselines else 0.0
    lines = [f"{'router':<16} {'accuracy':>8} {'cost':>10} {'cost/best':>9}  share of queries (top 3)"]

    def row(label: str, s: Summary) -> str:
        rel = f"{s.cost / ref_cost:9.1%}" if ref_cost else f"{'-':>9}"
        return f"{label:<16} {s.accuracy:8.4f} {s.cost:10.4f} {rel}  {_shares(s.share)}"

    lines += [row(f"alpha={alpha:.2f}", s) for alpha, s in curve]
    lines.append("-" * 60)
    lines += [row(name, s) for name, s in baselines.items()]
    return "\n".join(lines)


def plot_curve(
    curve: Sequence[tuple[float, Summary]],
    baselines: dict[str, Summary],
    out: Path,
    title: str = "router accuracy vs cost",
) -> Path:
    """Write the accuracy-vs-cost curve with the baselines as labelled points."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 5))
    ax.plot([s.cost for _, s in curve], [s.accuracy for _, s in curve], "o-", label="router (alpha sweep)")
    for alpha, s in curve:
        if round(alpha * 10) == alpha * 10 and alpha in (0.0, 0.5, 1.0):
            ax.annotate(f"alpha={alpha:g}", (s.cost, s.accuracy), textcoords="offset points", xytext=(5, -12))
    for name, s in baselines.items():
        ax.scatter([s.cost], [s.accuracy], marker="s", zorder=3)
        ax.annotate(name, (s.cost, s.accuracy), textcoords="offset points", xytext=(5, 5))
    ax.set_xlabel("cost (summed over the split)")
    ax.set_ylabel("accuracy")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right")
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return out
