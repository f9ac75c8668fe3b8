"""Which kernels :func:`tfprune.oneshot` prunes, in which order, and their inputs ``X``.

A *target* is one kernel and the layer that multiplies it (a ``Dense``, an
``EinsumDense``, a ``Conv1D`` / ``Conv2D``, or one projection inside a
``MultiHeadAttention``), found among the model's layers and the sublayers
of its custom layers (:func:`targets`).

Inputs are read with a temporary hook on the projecting layer's ``call``:
the model runs eagerly on a calibration batch and each hooked call hands its
input over. A first pass on one sample gives the order in which the kernels
are called, a topological order; :func:`steps` groups neighbours that read
the same tensor (attention's q/k/v in self-attention), every other kernel is
a step of its own. While a step collects its inputs, the forward pass stops
(:class:`Stop`) once every hooked layer has been called as often as in a
full pass, so a step costs the model's prefix up to that layer. Works for
wrapped (``tfprune.prune``) and plain models, Functional, Sequential and
subclassed, and for sublayers that no functional sub-model could reach.
"""

import contextlib
import dataclasses
import re

import keras
import numpy as np

from tfprune import prunable
from tfprune._walk import layer_weights
from tfprune.wrappers import PruneWrapper

__all__ = ["Target", "targets", "steps", "capture", "reset", "Stop", "input_rows", "unsupported_reason",
           "layer_path", "describe_layer"]

_MHA_PARTS = (("_query_dense", "_key_dense", "_value_dense"), ("_output_dense",))


class Stop(Exception):
    """Raised by a hook once the step has all its inputs: ends the forward pass early."""


@dataclasses.dataclass
class Target:
    """One kernel to prune: ``key`` (``"block/attn/query/kernel"``), its layer in the
    graph (maybe a wrapper), the layer whose ``call`` gets the kernel's input, the
    :class:`~tfprune.prunable.PrunableWeight`, the wrapper (and the index of the
    weight in it) or ``None``, and how many times a forward pass calls the layer."""

    key: str
    layer: object
    sublayer: object
    info: object
    wrapper: object = None
    index: int = 0
    calls: int = 1


def _einsum_parts(equation):
    m = re.match(r"^\s*([\w.]+)\s*,\s*(\w+)\s*->\s*([\w.]+)\s*$", equation or "")
    return m.groups() if m else None


def unsupported_reason(layer):
    """Why ``layer`` (or the layer a wrapper holds) cannot be calibrated, or ``None``."""
    if isinstance(layer, PruneWrapper):
        layer = layer.layer
    if isinstance(layer, keras.layers.MultiHeadAttention):
        return None
    if isinstance(layer, keras.layers.EinsumDense):
        parts = _einsum_parts(layer.equation)
        if parts is None or "." in parts[0][1:] or "." in parts[1]:
            return f"its einsum '{layer.equation}' is not 'inputs,kernel->outputs' " \
                   "(an ellipsis is allowed only at the start of the inputs)"
        x, k, y = parts
        shared = [c for c in k if c in x.replace(".", "") and c in y]
        if shared or any(c not in x for c in k if c not in y):
            return f"its einsum '{layer.equation}' is not a matrix product of the inputs " \
                   "with the kernel (each output unit must see every contracted input)"
        return None
    if isinstance(layer, keras.layers.Dense):
        return None
    if isinstance(layer, (keras.layers.Conv1D, keras.layers.Conv2D)):
        if layer.groups != 1 or layer.data_format != "channels_last":
            return "only convolutions with groups=1 and channels_last are unfolded (im2col)"
        return None
    return (f"{type(layer).__name__} is not supported: one-shot calibration covers Dense, "
            "EinsumDense, MultiHeadAttention, Conv1D and Conv2D (groups=1, channels_last)")


def _children(layer):
    # Keras tracks sublayers (of models and of custom layers) in this order-preserving list.
    return list(layer._flatten_layers(include_self=False, recursive=False))


def _layer_targets(layer, path):
    wrapper = layer if isinstance(layer, PruneWrapper) else None
    inner = wrapper.layer if wrapper else layer
    subs = [getattr(inner, n) for names in _MHA_PARTS for n in names] \
        if isinstance(inner, keras.layers.MultiHeadAttention) else [inner]
    out = []
    for index, info in enumerate(layer_weights(layer)):
        sub = next((s for s in subs if getattr(s, "kernel", None) is info.variable), None)
        if sub is not None:
            out.append(Target(f"{path}/{info.key}", layer, sub, info, wrapper, index))
    return out


def targets(model, selected, skipped):
    """``(targets, left)``: a :class:`Target` per kernel to prune and ``[(path, reason)]``
    of the prunable layers left dense.

    Walks the model's layers and, inside custom layers (a Transformer block
    written as a ``Layer`` subclass), their sublayers; paths join names with
    ``/``. ``selected`` (``None``: everything) and ``skipped`` are sets of
    layer ids; selecting or skipping a custom layer covers its sublayers.
    """
    found, left, seen = [], [], set()

    def visit(layer, path, chosen):
        if id(layer) in seen or id(layer) in skipped:
            return
        seen.add(id(layer))
        chosen = chosen or id(layer) in (selected or ())
        if isinstance(layer, PruneWrapper) or prunable.is_prunable(layer):
            if chosen and layer_weights(layer):
                reason = unsupported_reason(layer)
                if reason:
                    left.append((path, reason))
                else:
                    found.extend(_layer_targets(layer, path))
            return
        for child in _children(layer):
            visit(child, f"{path}/{child.name}" if path else child.name, chosen)

    for child in _children(model):
        visit(child, child.name, selected is None)
    return found, left


def steps(found, first_call, first_input):
    """Groups the called targets in call order; neighbours reading one tensor share a step.

    ``first_call[id(t)]`` is the position of the target's first call in a
    forward pass, ``first_input[id(t)]`` the tensor it read. Calls happen in
    a topological order, so a step's inputs never depend on its own kernels;
    attention's q/k/v (one input) form one step.
    """
    ordered = sorted((t for t in found if id(t) in first_call), key=lambda t: first_call[id(t)])
    out = []
    for t in ordered:
        if out and first_input[id(t)] is first_input[id(out[-1][-1])]:
            out[-1].append(t)
        else:
            out.append([t])
    return out


def input_rows(sublayer, x):
    """The kernel's input as a float32 matrix ``(rows, in)``, columns in the order of
    the kernel's ``(out, in)`` view (``tfprune.granularity.to_matrix``).

    >>> d = keras.layers.Dense(2); d.build((None, 5, 3))
    >>> input_rows(d, np.ones((4, 5, 3))).shape
    (20, 3)
    """
    x = keras.ops.convert_to_numpy(x).astype(np.float32, copy=False)
    if isinstance(sublayer, (keras.layers.Conv1D, keras.layers.Conv2D)):
        return _patches(sublayer, x)
    if isinstance(sublayer, keras.layers.EinsumDense):
        xs, ks, ys = _einsum_parts(sublayer.equation)
        xs = xs.replace("...", "")
        lead = x.ndim - len(xs)  # dims covered by a leading ellipsis
        contracted = [c for c in ks if c not in ys]
        rest = list(range(lead)) + [lead + i for i, c in enumerate(xs) if c not in contracted]
        perm = rest + [lead + xs.index(c) for c in contracted]
        cols = int(np.prod([x.shape[lead + xs.index(c)] for c in contracted]))
        return np.transpose(x, perm).reshape(-1, cols)
    return x.reshape(-1, x.shape[-1])


def _patches(conv, x):
    """im2col: one row per output position, ``kh*kw*in`` (or ``k*in``) values each."""
    import tensorflow as tf

    one_d = isinstance(conv, keras.layers.Conv1D)
    kernel, strides, rates = (tuple(conv.kernel_size), tuple(conv.strides),
                              tuple(conv.dilation_rate))
    padding = conv.padding
    if one_d:  # a 1 x k image
        if padding == "causal":  # left padding, then 'valid'
            x = np.pad(x, ((0, 0), ((kernel[0] - 1) * rates[0], 0), (0, 0)))
            padding = "valid"
        x, kernel, strides, rates = x[:, None], (1,) + kernel, (1,) + strides, (1,) + rates
    # Patches are flattened (kh, kw, in): the layout of the kernel's (out, in) view.
    patches = np.asarray(tf.image.extract_patches(
        x, sizes=[1, *kernel, 1], strides=[1, *strides, 1], rates=[1, *rates, 1],
        padding=padding.upper()))
    return patches.reshape(-1, patches.shape[-1])


@contextlib.contextmanager
def capture(step, record, stop=True):
    """Hooks the step's layers: ``record(target, inputs)`` on each of their calls.

    With ``stop``, raises :class:`Stop` inside the forward pass once every
    target was called ``target.calls`` times; the caller catches it. Unhooks
    on exit.
    """
    by_sub = {}
    for t in step:
        by_sub.setdefault(id(t.sublayer), []).append(t)
    seen = {key: 0 for key in by_sub}
    hooked = []

    def make(sub, targets):
        original = sub.call

        def call(inputs, *args, **kwargs):
            for t in targets:
                record(t, inputs)
            seen[id(sub)] += 1
            if stop and all(seen[k] >= by_sub[k][0].calls for k in seen):
                raise Stop()
            return original(inputs, *args, **kwargs)
        return call

    try:
        for key, targets in by_sub.items():
            sub = targets[0].sublayer
            sub.call = make(sub, targets)  # instance attribute shadows the class's call
            hooked.append(sub)
        yield seen
    finally:
        for sub in hooked:
            del sub.call


def reset(seen):
    """Zeroes the call counts of :func:`capture` before the next batch."""
    for key in seen:
        seen[key] = 0


def layer_path(target):
    """The path of the target's layer (``"block/attn"``)."""
    return target.key[: -len(target.info.key) - 1]


def describe_layer(target):
    """``"layer 'block/attn' (MultiHeadAttention) weight 'query/kernel' (8, 2, 4)"``."""
    inner = target.wrapper.layer if target.wrapper else target.layer
    return (f"layer '{layer_path(target)}' ({type(inner).__name__}) weight "
            f"'{target.info.key}' {target.info.shape}")
