"""keras-hub Transformer blocks: ``TransformerEncoder`` / ``TransformerDecoder``.

Each is one custom layer holding self-attention, two LayerNormalizations and
a feed-forward pair. Its rule reads the residual width (query/key/value
kernels and the first FFN kernel consume it, the attention output and the
second FFN kernel produce it, the LayerNorms normalise it) and makes the FFN
hidden units a group of their own (``intermediate_dim`` rewritten). The
heads are a group too, but blocked: keras-hub derives the head size from
``hidden_dim // num_heads``, so fewer heads cannot be a config change. Blocks
with cross-attention (a decoder called with an encoder sequence) are skipped.
"""

from tfprune._walk import weights_by_key

__all__ = ["HUB_BLOCKS", "hub_block", "resize_hub_block"]

_FFN_IN, _FFN_OUT = "feedforward_intermediate_dense", "feedforward_output_dense"


def hub_block(b, call):
    layer = call.layer
    keys = weights_by_key(layer)
    att = [k[:-len("/query/kernel")] for k in keys if k.endswith("/query/kernel")]
    if len(att) != 1 or f"{_FFN_IN}/kernel" not in keys:
        return b.skip(call, f"keras-hub {type(layer).__name__} with cross-attention or an "
                            "unknown layout")
    src = b.get(call.inputs[0])
    if src.repeat != 1:
        return b.skip(call, "keras-hub block over a flattened or group-cut tensor")
    a = att[0]
    for name in ("query", "key", "value"):
        b.member(src, call, f"{a}/{name}/kernel", 0, "consumer")
    b.member(src, call, f"{a}/attention_output/kernel", 2, "producer")
    b.member(src, call, f"{_FFN_IN}/kernel", 0, "consumer")
    b.member(src, call, f"{_FFN_OUT}/kernel", 1, "producer")
    for key in keys:
        if key.endswith(("/gamma", "/beta")):
            b.member(src, call, key, 0, "param")
        elif key in (f"{a}/attention_output/bias", f"{_FFN_OUT}/bias"):
            b.member(src, call, key, 0, "producer")
    b.member(src, call, None, -1, "norm")
    b.fresh(layer.num_heads, f"{call.path}: keras-hub {type(layer).__name__} sets the head "
                             "size to hidden_dim // num_heads: heads cannot be removed")
    ffn = b.fresh(int(keys[f"{_FFN_IN}/kernel"].shape[-1]))
    b.member(ffn, call, f"{_FFN_IN}/kernel", 1, "producer")
    if f"{_FFN_IN}/bias" in keys:
        b.member(ffn, call, f"{_FFN_IN}/bias", 0, "producer")
    b.member(ffn, call, None, -1, "act")
    b.member(ffn, call, f"{_FFN_OUT}/kernel", 0, "consumer")
    b.set(("ffn", call.path), ffn)
    b.set(call.outputs[0], src)


def resize_hub_block(config, call, width):
    config["intermediate_dim"] = width(("ffn", call.path))


HUB_BLOCKS = {"TransformerEncoder": (hub_block, resize_hub_block),
              "TransformerDecoder": (hub_block, resize_hub_block)}
