"""The figures of ``tfprune-report`` as PNG bytes (matplotlib, Agg backend).

Each function returns PNG bytes, or None when matplotlib is not installed
(the report then says so instead of showing the figure).
"""

import io


def pyplot():
    """``matplotlib.pyplot`` on the Agg backend, or None without matplotlib."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def _png(fig, plt):
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()


def sensitivity(report):
    """Drop-vs-sparsity curves and the layer x sparsity heat map (``report.plot``'s figure)."""
    if pyplot() is None:
        return None
    buf = io.BytesIO()
    report.plot(buf)  # one figure for the sweep, wherever it is drawn
    return buf.getvalue()


def sparsity_bars(achieved, planned=None):
    """Horizontal bars of achieved sparsity per weight, with planned targets as ticks.

    Args:
      achieved: ``{"layer/kernel": sparsity}`` (``tfprune.sparsity``), or None.
      planned: ``{layer: target}`` (an allocation), or None.
    """
    plt = pyplot()
    if plt is None:
        return None
    import numpy as np
    planned = planned or {}
    names = list(achieved or {}) or list(planned)
    fig, ax = plt.subplots(figsize=(7.5, 0.45 * len(names) + 1.4))
    ys = np.arange(len(names))[::-1]
    if achieved:
        ax.barh(ys, [achieved[n] for n in names], color="#4c72b0", label="achieved")
    targets = [(y, planned.get(n.split("/")[0], planned.get(n))) for y, n in zip(ys, names)]
    targets = [(y, t) for y, t in targets if t is not None]
    if targets:
        ax.scatter([t for _, t in targets], [y for y, _ in targets], marker="|", s=400,
                   color="#dd8452", linewidths=3, label="planned", zorder=3)
        if not achieved:  # a plan alone: bars of the plan
            ax.barh([y for y, _ in targets], [t for _, t in targets], color="#dd8452", alpha=0.4)
    ax.set_yticks(ys, names, fontsize=8)
    ax.set_xlim(0, 1)
    ax.set_xlabel("sparsity (fraction of weights that are zero)")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    return _png(fig, plt)


def tradeoff(points):
    """Accuracy against latency (left) and file size (right), one labelled point per model.

    Args:
      points: dicts with ``label``, ``accuracy``, ``p50_ms`` and ``size`` (bytes); a
        point without latency or size is left out of that panel.
    """
    plt = pyplot()
    if plt is None:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, key, label, scale in ((axes[0], "p50_ms", "p50 latency (ms, 1 thread)", 1.0),
                                  (axes[1], "size", "file size (KiB)", 1 / 1024)):
        for i, p in enumerate(points):
            if p.get(key) is None or p.get("accuracy") is None:
                continue
            x = p[key] * scale
            ax.scatter(x, p["accuracy"], s=60, color=f"C{i % 10}", zorder=3)
            ax.annotate(p["label"], (x, p["accuracy"]), xytext=(5, 4),
                        textcoords="offset points", fontsize=8)
        ax.set_xlabel(label)
        ax.set_ylabel("accuracy")
        ax.grid(alpha=0.3)
        ax.margins(0.25)
    return _png(fig, plt)
