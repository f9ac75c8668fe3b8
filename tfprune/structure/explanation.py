"""What structural pruning can do with a model: one row per dependency group.

``tp.structure.explain(model)`` answers "why is this layer not pruned?"
without reading :class:`~tfprune.structure.DependencyGraph` internals: each
group of coupled channels, its width, the layers whose weights it indexes,
and, when it cannot lose channels, the node that blocks it.
"""

import dataclasses
import html

from tfprune.structure.transformer import components
from tfprune.structure.dependency import graph

__all__ = ["explain", "Explanation", "GroupRow"]

_NO_PRODUCER = "no layer produces these channels (nothing to cut)"


@dataclasses.dataclass(frozen=True)
class GroupRow:
    """One dependency group as :func:`explain` reports it.

    Attributes:
        id: the group's index in ``graph(model).groups``.
        width: its number of channels.
        layers: paths of the layers (and ``keras.ops`` nodes) it runs through,
            producers first.
        prunable: True if ``prune_channels`` may remove its channels.
        reasons: why not (empty if prunable); each names the blocking node.
        blocks: positions per channel in its tensors (``width`` channels in
            ``blocks`` equal blocks, after a grouped Conv or GroupNormalization:
            shown as ``width x blocks``).
        component: for Transformers, ``"heads"``, ``"kv_heads"``,
            ``"query_heads"`` or ``"ffn"`` with its block (``"heads (block 1)"``,
            see :func:`tfprune.structure.components`); ``""`` otherwise.
    """

    id: int
    width: int
    layers: tuple
    prunable: bool
    reasons: tuple
    blocks: int = 1
    component: str = ""

    @property
    def why(self):
        """The first reason, with a count of the others (``""`` if prunable)."""
        if not self.reasons:
            return ""
        more = len(self.reasons) - 1
        return self.reasons[0] + (f" (+{more} more)" if more else "")


class Explanation:
    """Rows of :func:`explain`: iterate, index, ``print`` it, or show it in a notebook.

    Attributes:
        model_name: name of the explained model.
        rows: the :class:`GroupRow` s, in group order.
        skipped: ``{node path: reason}`` of the nodes whose channels are left alone.
    """

    def __init__(self, model_name, rows, skipped):
        self.model_name = model_name
        self.rows = list(rows)
        self.skipped = dict(skipped)

    def __iter__(self):
        return iter(self.rows)

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, i):
        return self.rows[i]

    @property
    def prunable(self):
        """The rows ``prune_channels`` may cut."""
        return [r for r in self.rows if r.prunable]

    def summary(self):
        """One line: groups, prunable groups, prunable channels."""
        chans = sum(r.width * r.blocks for r in self.prunable)
        total = sum(r.width * r.blocks for r in self.rows)
        return (f"{self.model_name}: {len(self.rows)} groups, {len(self.prunable)} prunable "
                f"({chans} of {total} channels), {len(self.skipped)} nodes skipped")

    def _head(self):
        extra = ("component",) if any(r.component for r in self.rows) else ()
        return ("id", "width", "layers") + extra + ("prunable", "why not")

    def _cells(self, width=48):
        def cut(text):
            return text if len(text) <= width else text[:width - 3] + "..."
        extra = any(r.component for r in self.rows)
        for r in self.rows:
            layers = ", ".join(r.layers) or "-"
            size = str(r.width) if r.blocks == 1 else f"{r.width}x{r.blocks}"
            yield (str(r.id), size, cut(layers)) + ((r.component,) if extra else ()) + (
                "yes" if r.prunable else "no", r.why)

    def __str__(self):
        head = self._head()
        rows = list(self._cells())
        widths = [max(len(x) for x in col) for col in zip(head, *rows)]
        line = lambda cells: "  ".join(  # noqa: E731
            c.ljust(w) for c, w in zip(cells, widths)).rstrip()
        out = [self.summary(), line(head), line(["-" * w for w in widths])]
        return "\n".join(out + [line(r) for r in rows])

    def __repr__(self):
        return f"<Explanation {self.summary()}>"

    def _repr_html_(self):
        head = "".join(f"<th>{h}</th>" for h in self._head())
        body = "".join(
            "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>"
            for cells in self._cells(width=120))
        return (f"<p>{html.escape(self.summary())}</p>"
                f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")


def explain(model):
    """A table of every dependency group of ``model``: what can be pruned and why not.

    Args:
        model: a Functional or Sequential model (as for :func:`graph`).

    Returns:
        An :class:`Explanation` (a list of :class:`GroupRow` with a readable
        ``str`` and an HTML view for notebooks).

    >>> import keras, tfprune as tp
    >>> inp = keras.Input((8, 8, 3))
    >>> x = keras.layers.Conv2D(16, 3, name="conv")(inp)
    >>> x = keras.layers.Activation("hard_swish", name="act")(x)
    >>> x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    >>> out = keras.layers.Dense(4, name="head")(x)
    >>> report = tp.structure.explain(keras.Model(inp, out, name="tiny"))
    >>> print(report)
    tiny: 3 groups, 1 prunable (16 of 23 channels), 0 nodes skipped
    id  width  layers           prunable  why not
    --  -----  ---------------  --------  ------------
    0   3      conv             no        model input
    1   16     conv, head, act  yes
    2   4      head             no        model output
    >>> report[1].prunable, report[2].reasons
    (True, ('model output',))
    """
    g = graph(model)
    kinds = {c.group: f"{c.kind} (block {c.block})" for c in components(g)}
    rows = []
    for grp in g.groups:
        weighted = [m.layer for m in grp.members if m.key is not None]
        producers = [m.layer for m in grp.members if m.role == "producer"]
        names = list(dict.fromkeys(producers + sorted(set(weighted))
                                   + sorted({m.layer for m in grp.members})))
        reasons = tuple(grp.reasons)
        if not grp.prunable and not reasons:
            reasons = (_NO_PRODUCER,)
        rows.append(GroupRow(grp.id, grp.size, tuple(names), grp.prunable, reasons,
                             grp.blocks, kinds.get(grp.id, "")))
    return Explanation(model.name, rows, g.skipped)
