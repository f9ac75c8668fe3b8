"""``OneShotReport``: what :func:`tfprune.oneshot` did to each kernel."""

__all__ = ["OneShotReport"]


class OneShotReport:
    """Per-kernel results of :func:`tfprune.oneshot`, in the order they were pruned.

    ``report.layers`` is a list of dicts with ``key`` (``"layer/weight"``),
    ``criterion``, ``granularity``, ``sparsity`` (fraction of zeros after
    pruning), ``error`` (:math:`\\|WX - W'X\\|_F^2 / \\|WX\\|_F^2` on the
    kernel's calibration inputs ``X``), ``rows`` (rows of ``X``), ``inputs``
    (columns of ``X``) and ``seconds`` (solve time, without the forward
    passes). ``report[key]`` gives one dict; ``report.recalibrated`` names the
    BatchNorm layers whose statistics were re-estimated; ``report.skipped`` lists
    ``(layer path, reason)`` of prunable layers left dense.

    >>> r = OneShotReport()
    >>> r.add({"key": "fc/kernel", "criterion": "wanda", "granularity": "2:4",
    ...        "sparsity": 0.5, "error": 0.1, "rows": 64, "inputs": 16, "seconds": 0.01})
    >>> r["fc/kernel"]["error"], len(r)
    (0.1, 1)
    >>> print(r)   # doctest: +NORMALIZE_WHITESPACE
    kernel     criterion granularity  sparsity rel. error rows inputs
    fc/kernel  wanda     2:4         0.500    0.1000     64   16
    """

    def __init__(self, skipped=()):
        self.layers = []
        self.skipped = list(skipped)
        self.recalibrated = []  # BatchNorm layers whose statistics were re-estimated

    def add(self, row):
        self.layers.append(dict(row))

    def __getitem__(self, key):
        for row in self.layers:
            if row["key"] == key:
                return row
        known = ", ".join(repr(r["key"]) for r in self.layers)
        raise KeyError(f"No kernel {key!r} in this one-shot report; it has {known}.")

    def __len__(self):
        return len(self.layers)

    def __iter__(self):
        return iter(self.layers)

    def as_dict(self):
        """``{key: row}`` (JSON-friendly)."""
        return {row["key"]: dict(row) for row in self.layers}

    def __str__(self):
        width = max([len("kernel")] + [len(r["key"]) for r in self.layers]) + 1
        lines = [f"{'kernel':<{width}} criterion granularity  sparsity rel. error rows inputs"]
        for r in self.layers:
            lines.append(f"{r['key']:<{width}} {r['criterion']:<9} {r['granularity']:<12} "
                         f"{r['sparsity']:<8.3f} {r['error']:<10.4f} {r['rows']:<4} "
                         f"{r['inputs']}")
        for path, reason in self.skipped:
            lines.append(f"{path}: left dense ({reason})")
        return "\n".join(lines)

    def __repr__(self):
        return f"<OneShotReport: {len(self.layers)} kernels, {len(self.skipped)} layers skipped>"
