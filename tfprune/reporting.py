"""Reporting on pruned, stripped and plain models: ``sparsity`` and ``summary``."""

import keras
import numpy as np

from tfprune._walk import enumerate_layers, layer_weights
from tfprune.wrappers import PruneWrapper

__all__ = ["sparsity", "summary"]


def sparsity(model):
    """Fraction of exact zeros of each prunable weight.

    Works on pruned models, stripped models and plain models alike. Keys are
    ``"<layer path>/<weight>"``, e.g. ``"dense/kernel"`` or
    ``"mha/query/kernel"``.

    >>> import keras, tfprune as tp
    >>> m = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2, name="d")])
    >>> _ = m.layers[0].kernel.assign([[0., 1.], [2., 3.]])
    >>> tp.sparsity(m)
    {'d/kernel': 0.25}
    """
    result = {}
    for path, layer in enumerate_layers(model):
        for info in layer_weights(layer):
            value = keras.ops.convert_to_numpy(info.variable)
            result[f"{path}/{info.key}"] = float(np.mean(value == 0))
    return result


def summary(model, print_fn=print):
    """Prints (and returns) a per-layer table of pruning targets and results.

    Columns: layer/weight, shape, target (the schedule's value at the current
    step, ``-`` for unwrapped layers), achieved sparsity, nonzeros / total.
    """
    rows = []
    total = nonzero = 0
    for path, layer in enumerate_layers(model):
        target = layer.target_sparsity() if isinstance(layer, PruneWrapper) else None
        for info in layer_weights(layer):
            value = keras.ops.convert_to_numpy(info.variable)
            nz = int(np.count_nonzero(value))
            total += value.size
            nonzero += nz
            rows.append({
                "weight": f"{path}/{info.key}", "shape": tuple(value.shape),
                "target": target, "achieved": 1.0 - nz / max(value.size, 1),
                "nonzeros": nz, "size": int(value.size)})
    header = f"{'weight':<40} {'shape':<18} {'target':>7} {'achieved':>9} {'nonzeros':>19}"
    lines = [header, "-" * len(header)]
    for r in rows:
        tgt = "-" if r["target"] is None else f"{r['target']:.3f}"
        lines.append(f"{r['weight']:<40} {str(r['shape']):<18} {tgt:>7} "
                     f"{r['achieved']:>9.3f} {r['nonzeros']:>9}/{r['size']:<9}")
    overall = 1.0 - nonzero / max(total, 1)
    lines.append("-" * len(header))
    lines.append(f"{'total':<40} {'':<18} {'':>7} {overall:>9.3f} {nonzero:>9}/{total:<9}")
    print_fn("\n".join(lines))
    return rows
