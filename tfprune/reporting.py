"""Reporting on pruned, stripped and plain models: ``sparsity`` and ``summary``."""

import keras
import numpy as np

from tfprune import prunable
from tfprune.api import _is_graph_model, walk_layers
from tfprune.wrappers import PruneWrapper

__all__ = ["sparsity", "summary"]


def _enumerate(model):
    """``(path, layer)`` pairs to report on: wrappers, not their inner layers."""
    if not isinstance(model, keras.Model):
        return [(model.name, model)]
    if _is_graph_model(model):
        return list(walk_layers(model))
    layers = list(model._flatten_layers(include_self=False, recursive=True))
    inner = {id(l.layer) for l in layers if isinstance(l, PruneWrapper)}
    return [(l.name, l) for l in layers if id(l) not in inner]


def _layer_weights(layer):
    if isinstance(layer, PruneWrapper):
        return layer.prunable_weights, layer
    if prunable.is_prunable(layer) and layer.built:
        return prunable.prunable_weights(layer), None
    return [], None


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
    layers = _enumerate(model)
    result = {}
    for path, layer in layers:
        infos, _ = _layer_weights(layer)
        for info in infos:
            value = keras.ops.convert_to_numpy(info.variable)
            result[f"{path}/{info.key}"] = float(np.mean(value == 0))
    return result


def summary(model, print_fn=print):
    """Prints (and returns) a per-layer table of pruning targets and results.

    Columns: layer/weight, shape, target (the schedule's value at the current
    step, ``-`` for unwrapped layers), achieved sparsity, nonzeros / total.
    """
    rows = []
    layers = _enumerate(model)
    total = nonzero = 0
    for path, layer in layers:
        infos, wrapper = _layer_weights(layer)
        target = wrapper.target_sparsity() if wrapper is not None else None
        for info in infos:
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
