"""The prunable ops a latency table measures, as standalone one-op models (private)."""

import json

import keras
import numpy as np

from tfprune import _walk

L = keras.layers
# Layer class -> the config field holding its output channels (None: follows the input).
CHANNELS = {L.Dense: "units", L.Conv1D: "filters", L.Conv2D: "filters",
            L.DepthwiseConv2D: None}
_IGNORED = ("name", "trainable", "dtype", "channels")


def supported(layer):
    # Exact classes: a subclass (Conv2DTranspose is a Conv2D) may run a different kernel.
    return type(layer) in CHANNELS


class Op:
    """One prunable layer call: where it sits, its shape, and its channel grid."""

    def __init__(self, call, fixed_in, fixed_out):
        self.name = call.path
        self.layer = call.layer
        self.in_shape = tuple(int(d) if d is not None else 1 for d in call.in_shapes[0])
        self.cin = self.in_shape[-1]
        self.field = CHANNELS[type(call.layer)]
        self.cout = int(call.out_shapes[0][-1])
        # A dimension that is a model input/output never changes under channel pruning.
        self.fixed_in, self.fixed_out = fixed_in, fixed_out or self.field is None

    def grid(self, widths):
        def counts(n, fixed):
            return [n] if fixed else sorted({max(1, int(round(w * n))) for w in widths})
        return counts(self.cin, self.fixed_in), counts(self.cout, self.fixed_out)

    def config(self):
        cfg = self.layer.get_config()
        return {k: v for k, v in cfg.items() if k not in _IGNORED and not k.endswith(
            ("_initializer", "_regularizer", "_constraint"))}

    def key(self, cin, cout, encoding="dense", sparsity=None):
        """What the latency depends on: op, settings, input shape, channels, encoding.

        A sparse encoding adds the kernel's sparsity to the key; the dense key
        is unchanged by it (caches written before sparse entries stay valid).
        """
        cfg = self.config()
        if self.field:
            cfg.pop(self.field, None)
        shape = list(self.in_shape[:-1]) + [cin]
        key = {"op": type(self.layer).__name__, "config": cfg, "input": shape,
               "out": cout if self.field else None, "encoding": encoding}
        if encoding != "dense":
            key["sparsity"] = round(float(sparsity), 6)
        return json.dumps(key, sort_keys=True, default=str)

    def model(self, cin, cout):
        """A one-layer Keras model with ``cin`` inputs and ``cout`` outputs (random weights)."""
        cfg = self.layer.get_config()
        cfg.pop("name", None)
        if self.field:
            cfg[self.field] = cout
        for k in list(cfg):
            if k.endswith(("_regularizer", "_constraint")):
                cfg[k] = None
        layer = type(self.layer).from_config(cfg)
        x = keras.Input(batch_shape=(1,) + self.in_shape[1:-1] + (cin,))
        return keras.Model(x, layer(x))


def ops(model):
    """The measurable ops of ``model`` in call order; also the names left out and why."""
    _walk.check_graph_model(model, "tfprune.hardware.latency_table")
    calls, inputs, outputs, _ = _walk.walk(model)
    found, skipped = [], {}
    for call in calls:
        if call.is_op:
            continue
        if supported(call.layer):
            found.append(Op(call, call.inputs[0] in inputs, call.outputs[0] in outputs))
        elif _walk.layer_weights(call.layer):
            skipped[call.path] = f"{type(call.layer).__name__} is not measured (overhead term)"
    return found, skipped


def interp(x, xs, ys):
    """Piecewise-linear in ``x`` over the grid ``xs``, extrapolated linearly past its ends.

    A one-point grid scales proportionally (latency ~ channels), the best
    guess with nothing measured around it.
    """
    xs, ys = np.asarray(xs, float), np.asarray(ys, float)
    if len(xs) == 1:
        return float(ys[0] * x / xs[0])
    if x < xs[0]:
        i = 0
    elif x > xs[-1]:
        i = len(xs) - 2
    else:
        return float(np.interp(x, xs, ys))
    slope = (ys[i + 1] - ys[i]) / (xs[i + 1] - xs[i])
    return float(ys[i] + slope * (x - xs[i]))


def model_key(model):
    """The whole model's structure, free of auto-generated names (``dense_3``...)."""
    calls, inputs, outputs, _ = _walk.walk(model)
    index = {k: i for i, k in enumerate(inputs)}

    def ref(k):
        return index.setdefault(k, len(index))

    rows = []
    for call in calls:
        cfg = call.layer.get_config() if hasattr(call.layer, "get_config") else {}
        cfg = {k: v for k, v in cfg.items() if k != "name"}
        rows.append([type(call.layer).__name__, cfg, [ref(k) for k in call.inputs],
                     [ref(k) for k in call.outputs], [list(s) for s in call.in_shapes]])
    return json.dumps({"calls": rows, "outputs": [ref(k) for k in outputs]}, sort_keys=True,
                      default=str)
