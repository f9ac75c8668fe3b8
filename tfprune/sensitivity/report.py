"""``SensitivityReport``: the layer x sparsity table of a sweep or an estimate.

Each row is ``{"layer", "params", "sparsity", "metric", "drop"}`` where
``drop`` is how much worse the metric got (``baseline - metric`` for
accuracy-like metrics, ``metric - baseline`` for losses): larger = more
sensitive. ``layer`` is a layer path, or ``"a+b"`` for channels coupled
across layers (see :attr:`SensitivityReport.groups`).

>>> rep = SensitivityReport(
...     [{"layer": "a", "params": 10, "sparsity": 0.5, "metric": 0.9, "drop": 0.0},
...      {"layer": "b", "params": 30, "sparsity": 0.5, "metric": 0.6, "drop": 0.3}],
...     {"metric": "accuracy", "baseline": 0.9})
>>> rep.most_sensitive(1)
['b']
>>> print(rep.to_csv().splitlines()[1])
a,10,0.5,0.9,0.0
"""

import csv
import io
import json
import os

import numpy as np

from tfprune.sensitivity import _components, _shards, _store

__all__ = ["SensitivityReport", "merge", "load"]

_COLUMNS = ("layer", "params", "sparsity", "metric", "drop")


def _write(text, path):
    if path is not None:
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
    return text


class SensitivityReport:
    """Table of metric drops per pruning unit and sparsity, plus run metadata.

    Attributes:
        table: rows sorted by layer order then sparsity.
        meta: ``baseline``, ``metric``, ``higher_is_better``, ``criterion``,
            ``granularity``, ``model`` and ``units`` (``{name: {"params",
            "flops", "layers", "members"}}``).
        model: the swept model when the report comes from
            :func:`~tfprune.sensitivity.sweep` in this process (not saved,
            ``None`` once loaded): channel allocations count it.

    >>> rep = SensitivityReport(
    ...     [{"layer": "a", "params": 8, "sparsity": 0.9, "metric": 0.7, "drop": 0.2},
    ...      {"layer": "a", "params": 8, "sparsity": 0.5, "metric": 0.9, "drop": 0.0}],
    ...     {"metric": "accuracy", "baseline": 0.9})
    >>> rep.baseline, rep.sparsities, rep.curve("a")
    (0.9, [0.5, 0.9], ([0.0, 0.5, 0.9], [0.0, 0.0, 0.2]))
    """

    model = None

    def __init__(self, rows, meta):
        self.meta = dict(meta)
        order = {name: i for i, name in enumerate(self.meta.get("units", {}))}
        self.table = sorted(
            ({k: r[k] for k in _COLUMNS if k in r} for r in rows),
            key=lambda r: (order.get(r["layer"], len(order)), r["layer"], r["sparsity"]))

    # -- accessors --------------------------------------------------------
    @property
    def baseline(self):
        """Metric of the unpruned model."""
        return self.meta.get("baseline")

    @property
    def layers(self):
        """Unit names in model order."""
        seen = []
        for r in self.table:
            if r["layer"] not in seen:
                seen.append(r["layer"])
        return seen

    @property
    def sparsities(self):
        """Sorted sparsities present in the table."""
        return sorted({r["sparsity"] for r in self.table})

    @property
    def groups(self):
        """``{unit: layers touched}`` for units spanning several layers."""
        units = self.meta.get("units", {})
        return {n: u["members"] for n, u in units.items() if len(u.get("members", [])) > 1}

    def by_component(self, sparsity=None):
        """Transformer units by block and type at ``sparsity`` (default: the largest).

        ``[{"block", "kind", "unit", "sparsity", "drop"}]``, ``kind`` one of
        ``"heads"``, ``"kv_heads"``, ``"query_heads"``, ``"ffn"``,
        ``"residual"`` (empty for reports without Transformer components:
        a channel sweep of a Transformer labels them, e.g.
        ``sweep(model, data, granularity="channels").by_component()``).

        >>> rep = SensitivityReport([{"layer": "fc", "params": 1, "sparsity": 0.5,
        ...                           "metric": 0.5, "drop": 0.25}], {})
        >>> rep.by_component()
        []
        """
        return _components.rows(self, sparsity)

    def curve(self, layer):
        """``(sparsities, drops)`` of one unit, starting at ``(0, 0)``.

        >>> rep = SensitivityReport([{"layer": "a", "params": 1, "sparsity": 0.5,
        ...                           "metric": 0.5, "drop": 0.25}], {})
        >>> rep.curve("a")
        ([0.0, 0.5], [0.0, 0.25])
        """
        pts = sorted((r["sparsity"], r["drop"]) for r in self.table if r["layer"] == layer)
        if not pts:
            raise KeyError(f"No rows for layer '{layer}'; layers: {self.layers}.")
        if pts[0][0] > 0:
            pts.insert(0, (0.0, 0.0))
        return [p[0] for p in pts], [p[1] for p in pts]

    def most_sensitive(self, k=5, sparsity=None):
        """The ``k`` units with the largest drop at ``sparsity`` (mean over sparsities if None)."""
        scores = {}
        for layer in self.layers:
            rows = [r for r in self.table if r["layer"] == layer
                    and (sparsity is None or abs(r["sparsity"] - sparsity) < 1e-9)]
            if rows:
                scores[layer] = float(np.mean([r["drop"] for r in rows]))
        return sorted(scores, key=lambda n: -scores[n])[:k]

    def allocate(self, target_sparsity=None, target_params=None, target_flops=None,
                 max_drop=None, step=0.01, model=None, round_to=1, **hardware):
        """Per-layer sparsities for ``tfprune.prune(sparsity=...)`` (or per-group
        channel ratios for ``tfprune.structure.prune_channels``); see
        :func:`tfprune.sensitivity.allocate` (also for ``hardware``:
        ``target_latency_ms``/``table``, ``target_energy``/``energy``).
        ``model`` defaults to :attr:`model`."""
        from tfprune.sensitivity.allocation import allocate
        return allocate(self, target_sparsity=target_sparsity, target_params=target_params,
                        target_flops=target_flops, max_drop=max_drop, step=step,
                        model=model, round_to=round_to, **hardware)

    # -- export -------------------------------------------------------------
    def to_csv(self, path=None):
        """CSV text of :attr:`table` (also written to ``path`` if given)."""
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(_COLUMNS)
        for r in self.table:
            w.writerow([r[k] for k in _COLUMNS])
        return _write(buf.getvalue(), path)

    def to_json(self, path=None):
        """JSON text ``{"meta": ..., "table": [...]}`` (also written to ``path``)."""
        return _write(json.dumps({"meta": self.meta, "table": self.table}, indent=1), path)

    def to_markdown(self, digits=4):
        """A markdown table: one row per unit, one column per sparsity (drops).

        >>> rep = SensitivityReport([{"layer": "a", "params": 4, "sparsity": 0.5,
        ...                           "metric": 0.8, "drop": 0.1}], {"metric": "accuracy"})
        >>> print(rep.to_markdown(2))
        | layer | params | drop @0.5 |
        |---|---:|---:|
        | a | 4 | 0.10 |
        """
        sp = self.sparsities
        lines = ["| layer | params | " + " | ".join(f"drop @{s:g}" for s in sp) + " |",
                 "|---|---:|" + "---:|" * len(sp)]
        for layer in self.layers:
            rows = {r["sparsity"]: r for r in self.table if r["layer"] == layer}
            params = next(iter(rows.values()))["params"]
            cells = [f"{rows[s]['drop']:.{digits}f}" if s in rows else "" for s in sp]
            lines.append(f"| {layer} | {params} | " + " | ".join(cells) + " |")
        return "\n".join(lines)

    def plot(self, path, title=None, by=None):
        """Saves drop-vs-sparsity curves per unit and a unit x sparsity heatmap to ``path``.

        ``by="component"``: for a Transformer swept with channel granularity,
        one panel per component type (attention heads, FFN neurons, residual
        width), one curve per block instead.
        """
        if by not in (None, "unit", "component"):
            raise ValueError(f"plot: by must be None, 'unit' or 'component'; got {by!r}.")
        try:
            import matplotlib
            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError as e:
            raise ImportError("SensitivityReport.plot needs matplotlib: "
                              "pip install 'tfprune[plots]'") from e
        if by == "component":
            return _components.plot(self, path, title)
        layers, sp = self.layers, self.sparsities
        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, max(4, 0.35 * len(layers) + 2)))
        for i, layer in enumerate(layers):
            xs, ys = self.curve(layer)
            # the default colour cycle has 10 colours: change line style after it
            ax1.plot(xs, ys, marker="o", ms=3, label=layer, ls=("-", "--", ":")[i // 10 % 3])
        ax1.set_xlabel("sparsity of the layer alone")
        ax1.set_ylabel(f"{self.meta.get('metric', 'metric')} drop")
        ax1.grid(alpha=0.3)
        ax1.legend(fontsize=7, loc="upper left")
        grid = np.full((len(layers), len(sp)), np.nan)
        for r in self.table:
            grid[layers.index(r["layer"]), sp.index(r["sparsity"])] = r["drop"]
        im = ax2.imshow(grid, aspect="auto", cmap="viridis")
        ax2.set_xticks(range(len(sp)), [f"{s:g}" for s in sp])
        ax2.set_yticks(range(len(layers)), layers, fontsize=7)
        ax2.set_xlabel("sparsity")
        fig.colorbar(im, ax=ax2, label="drop")
        fig.suptitle(title or f"Sensitivity ({self.meta.get('criterion')}, "
                              f"{self.meta.get('granularity')})")
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
        return path

    def __repr__(self):
        return (f"SensitivityReport({len(self.layers)} units x {len(self.sparsities)} "
                f"sparsities, metric={self.meta.get('metric')!r}, "
                f"baseline={self.baseline})")


def load(path):
    """Reads a report from a sweep's JSONL ``output=`` file or a ``to_json`` file."""
    path = os.fspath(path)
    with open(path, "r", encoding="utf-8") as f:
        first = f.read(1)
    if first == "{":
        with open(path, "r", encoding="utf-8") as f:
            head = f.readline()
        try:
            obj = json.loads(head)
        except json.JSONDecodeError:
            obj = None
        if not (isinstance(obj, dict) and obj.get("kind") == _store.KIND):
            with open(path, "r", encoding="utf-8") as f:
                try:
                    obj = json.load(f)
                except json.JSONDecodeError as e:
                    raise ValueError(f"{path}: line {e.lineno}: not valid JSON ({e.msg}).") from None
            if not (isinstance(obj, dict) and {"meta", "table"} <= set(obj)):
                raise ValueError(f"{path}: not a tfprune sensitivity report "
                                 "(JSONL record or to_json output).")
            return SensitivityReport(obj["table"], obj["meta"])
    header, rows = _store.read(path)
    meta = {k: v for k, v in header.items() if k not in ("kind", "version")}
    report = SensitivityReport(rows, meta)
    report.source = path  # a merge names the file of an incomplete shard
    return report


def merge(reports, partial=False):
    """Combines shard reports (objects or file paths) of one run into one report.

    Refuses reports of different runs (model, criterion, granularity, metric
    or baseline); identical duplicate rows are kept once. A shard that is
    missing, or whose process died before its last trial, is an error naming
    the shard and its file (re-running that shard with the same output file
    finishes it); ``partial=True`` merges what is there with a warning.
    """
    reports = [load(r) if isinstance(r, (str, os.PathLike)) else r for r in reports]
    if not reports:
        raise ValueError("merge: no reports given.")
    meta = dict(reports[0].meta)
    rows = {}
    for i, rep in enumerate(reports):
        _store.check_same(meta, rep.meta, f"merge: report {i}")
        if (meta.get("baseline") is not None and rep.baseline is not None
                and abs(meta["baseline"] - rep.baseline) > 1e-4):
            raise ValueError(f"merge: report {i} has baseline {rep.baseline} but report 0 "
                             f"has {meta['baseline']}: different model weights or data.")
        units = dict(meta.get("units", {}))
        units.update(rep.meta.get("units", {}))
        meta["units"] = units
        for r in rep.table:
            rows[(r["layer"], round(r["sparsity"], 9))] = r
    _shards.check_complete(reports, partial)
    meta.pop("shard", None)
    return SensitivityReport(list(rows.values()), meta)
