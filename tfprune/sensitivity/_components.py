"""Transformer components in sensitivity reports: heads and FFN neurons per block.

With a channel granularity every coupled group is a unit (see
``_coupling``); in a Transformer the groups are the heads of each attention
layer (one unit per attention layer, two for grouped-query attention), the
hidden units of each FFN (one unit per block) and the residual width. This
module labels those units (``kind``, ``block``: from
:func:`tfprune.structure.components`) and draws a report grouped by block
and component type.
"""

from tfprune.structure.transformer import components

__all__ = ["labels", "rows", "plot"]


def labels(g):
    """``{group id: (unit name, kind, block)}`` of ``g``'s Transformer groups.

    Heads and FFN groups come from :func:`tfprune.structure.components`;
    groups through a LayerNormalization that are neither are the residual
    width (``kind="residual"``, ``block=None``).
    """
    found = {c.group: (c.name, c.kind, c.block) for c in components(g)}
    if not found:
        return {}
    for grp in g.prunable_groups:
        if grp.id not in found and any(m.role == "norm" for m in grp.members):
            found[grp.id] = (None, "residual", None)
    return found


def rows(report, sparsity=None):
    """``[{"block", "kind", "unit", "drop"}]`` at ``sparsity`` (default: the largest).

    Only units with a component label; sorted by block then kind.
    """
    units = report.meta.get("units", {})
    sp = report.sparsities
    if not sp:
        return []
    s = max(sp) if sparsity is None else min(sp, key=lambda v: abs(v - sparsity))
    out = []
    for r in report.table:
        info = units.get(r["layer"], {})
        if r["sparsity"] == s and info.get("kind"):
            out.append({"block": info.get("block"), "kind": info["kind"], "unit": r["layer"],
                        "sparsity": s, "drop": r["drop"]})
    order = {"heads": 0, "kv_heads": 1, "query_heads": 2, "ffn": 3, "residual": 4}
    return sorted(out, key=lambda x: (-1 if x["block"] is None else x["block"],
                                      order.get(x["kind"], 9), x["unit"]))


def plot(report, path, title=None):
    """One panel per component type (heads, FFN, ...), one curve per block."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    units = report.meta.get("units", {})
    kinds = {}
    for name in report.layers:
        info = units.get(name, {})
        if info.get("kind"):
            kinds.setdefault(info["kind"], []).append((info.get("block"), name))
    if not kinds:
        raise ValueError(
            "plot(by='component'): this report has no Transformer components. Run "
            "tfprune.sensitivity.sweep/estimate with granularity='channels' on a model with "
            "MultiHeadAttention/GroupQueryAttention layers.")
    order = [k for k in ("heads", "kv_heads", "query_heads", "ffn", "residual") if k in kinds]
    fig, axes = plt.subplots(1, len(order), figsize=(4.5 * len(order), 4), sharey=True,
                             squeeze=False)
    n_blocks = max([b for k in order for b, _ in kinds[k] if b is not None] + [0]) + 1
    cmap = plt.get_cmap("viridis")
    for ax, kind in zip(axes[0], order):
        for block, name in sorted(kinds[kind], key=lambda x: (x[0] is None, x[0] or 0)):
            xs, ys = report.curve(name)
            colour = cmap(0.85 * (block or 0) / max(1, n_blocks - 1))
            label = "all blocks" if block is None else f"block {block}"
            ax.plot(xs, ys, marker="o", ms=3, color=colour, label=label)
        ax.set_title(kind)
        ax.set_xlabel("fraction removed")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper left")
    axes[0][0].set_ylabel(f"{report.meta.get('metric', 'metric')} drop")
    fig.suptitle(title or f"Sensitivity by component ({report.meta.get('criterion')})")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
