"""Rules for Transformer layers: grouped-query attention and EinsumDense projections.

``GroupQueryAttention(num_query_heads=H, num_key_value_heads=G)`` repeats each
key/value head for ``r = H / G`` consecutive query heads (query head ``i``
reads key/value head ``i // r``). Two channel spaces of its own:

- ``kv_heads`` (``G`` channels): removing key/value head ``j`` removes its
  key/value kernel columns and the ``r`` query heads ``j*r ... j*r+r-1``
  that read it (query kernel columns, output kernel rows);
- ``query_heads`` (``r`` channels): removing channel ``j`` removes query head
  ``j`` of *every* key/value group (positions ``j, r+j, 2r+j, ...``), so each
  key/value head keeps as many query heads and ``H / G`` stays an integer.

Its output projection writes the query's width (the layer has no
``output_shape``), so the output channels are the query's channels.

``EinsumDense`` is handled when it is a Dense in disguise: a 2-D kernel
contracting the input's last axis and producing the output's last axis
(``"btd,df->btf"``), bias on that axis or none. Multi-axis kernels (heads
split by the einsum, ``"btd,dnh->btnh"``) are skipped with the equation in
the reason.
"""

import re

from tfprune.structure._layout import Struct
from tfprune.structure._more_rules import producer_out

__all__ = ["gqa", "resize_gqa", "einsum_dense", "resize_einsum_dense", "dense_like"]


def gqa(b, call):
    """GroupQueryAttention(query, value): ``kv_heads`` and ``query_heads`` groups."""
    layer = call.layer
    if len(call.inputs) != 2 or getattr(layer, "use_gate", False):
        return b.skip(call, "grouped-query attention with a key/mask tensor or a gate "
                            "is not supported (call it as layer(query, value))")
    q, v = b.get(call.inputs[0]), b.get(call.inputs[1])
    if q.repeat != 1 or v.repeat != 1:
        return b.skip(call, "attention over a flattened or group-cut tensor")
    n_kv, r = layer.num_key_value_heads, layer.num_query_heads // layer.num_key_value_heads
    bias = layer.use_bias
    b.member(q, call, "query/kernel", 0, "consumer")
    b.member(v, call, "key/kernel", 0, "consumer")
    b.member(v, call, "value/kernel", 0, "consumer")
    kv = b.fresh(n_kv)
    for name in ("key", "value"):
        b.member(kv, call, f"{name}/kernel", 1, "producer")
        if bias:
            b.member(kv, call, f"{name}/bias", 0, "producer")
    b.member(kv, call, "query/kernel", 1, "producer", inner=r)
    if bias:
        b.member(kv, call, "query/bias", 0, "producer", inner=r)
    b.member(kv, call, "attention_output/kernel", 0, "consumer", inner=r)
    b.set(("kv_heads", call.path), kv)

    per_kv = b.fresh(r)
    spread = Struct.of(per_kv.parts[0].segs, repeat=n_kv)  # position j of every kv group
    b.member(spread, call, "query/kernel", 1, "producer")
    if bias:
        b.member(spread, call, "query/bias", 0, "producer")
    # A zero query alone does not silence a head (uniform attention still
    # averages the values): its output rows are a producer too, so the head
    # counts as silent only when they are zero.
    b.member(spread, call, "attention_output/kernel", 0, "producer")
    b.member(spread, call, "attention_output/kernel", 0, "consumer")
    b.set(("query_heads", call.path), per_kv)

    b.member(q, call, "attention_output/kernel", 2, "producer")
    if bias:
        b.member(q, call, "attention_output/bias", 0, "producer")
    b.set(call.outputs[0], q)


def resize_gqa(config, call, width):
    n_kv = width(("kv_heads", call.path))
    config["num_key_value_heads"] = n_kv
    config["num_query_heads"] = n_kv * width(("query_heads", call.path))


_EQUATION = re.compile(r"^\s*(\w+)\s*,\s*(\w+)\s*->\s*(\w+)\s*$")


def dense_like(layer):
    """``None`` if ``layer`` (an EinsumDense) is a Dense in disguise, else why not.

    >>> import keras
    >>> dense_like(keras.layers.EinsumDense("abc,cd->abd", output_shape=(None, 4)))
    >>> dense_like(keras.layers.EinsumDense("abc,cde->abde", output_shape=(None, 2, 4)))[:40]
    "equation 'abc,cde->abde': only a 2-D ker"
    """
    m = _EQUATION.match(layer.equation or "")
    why = (f"equation {layer.equation!r}: only a 2-D kernel contracting the input's last "
           "axis into the output's last axis ('btd,df->btf') is supported")
    if not m:
        return why
    x, k, y = m.groups()
    if len(k) != 2 or k[0] != x[-1] or k[1] != y[-1] or k[0] in y or k[1] in x \
            or x[:-1] != y[:-1]:
        return why
    if layer.bias_axes not in (None, "", k[1]):
        return f"bias_axes={layer.bias_axes!r} (only the output axis {k[1]!r} is supported)"
    return None


def einsum_dense(b, call):
    why = dense_like(call.layer)
    if why:
        return b.skip(call, why)
    b.member(b.get(call.inputs[0]), call, "kernel", 0, "consumer")
    out = b.fresh(int(call.out_shapes[0][-1]))
    producer_out(b, call, "kernel", 1, out=out)
    if call.layer.bias is not None and not getattr(call.layer, "use_bias", False):
        b.member(out, call, "bias", 0, "producer")


def resize_einsum_dense(config, call, width):
    shape = config["output_shape"]
    new = width(call.outputs[0])
    config["output_shape"] = new if isinstance(shape, int) else tuple(shape[:-1]) + (new,)
