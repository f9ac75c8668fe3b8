"""``to_tflite(sparse="auto")``: an FC layer stays sparse only where that is faster (private).

The converter's ``EXPERIMENTAL_SPARSITY`` is model-wide, and a model converted
with it is not the dense model plus sparse weights: its FULLY_CONNECTED op
code gets a newer version that XNNPACK declines even for the layers whose
weights stay dense (measured: an int8 MLP densified back runs 10x slower, on
the builtin kernels). So we start from the *dense* conversion and transplant,
per layer, the sparse weight tensor (and a separate op code with the sparse
version) from the sparse conversion, then time the candidates.
"""

import copy

import numpy as np

from tfprune.export import _flatbuffer as fb
from tfprune.export import _timing


def _fc_ops(model):
    graph = model.subgraphs[0]
    return [op for op in graph.operators if fb.opcode_name(model, op) == "FULLY_CONNECTED"]


def candidates(sparse_bytes):
    """``[(position among FC ops, tensor name, block "1xN", density)]`` of sparse FC weights."""
    data, model = fb.load(sparse_bytes)
    graph = model.subgraphs[0]
    out = []
    for k, op in enumerate(_fc_ops(model)):
        t = graph.tensors[int(op.inputs[1])]
        if t.sparsity is None:
            continue
        stored = len(fb.buffer_data(model, data, t.buffer))
        density = stored / (np.dtype(fb.NUMPY_TYPES[t.type]).itemsize * np.prod(t.shape))
        out.append((k, t.name.decode(), "x".join(map(str, fb.block_shape(t))), float(density)))
    return out


def compose(dense_bytes, sparse_bytes, keep):
    """The dense model with the sparse weights of FC positions ``keep`` transplanted."""
    _, dense = fb.load(dense_bytes)
    sdata, sparse = fb.load(sparse_bytes)
    if not keep:
        return dense
    dfc, sfc = _fc_ops(dense), _fc_ops(sparse)
    if len(dfc) != len(sfc):
        raise ValueError("dense and sparse conversions differ in FULLY_CONNECTED ops")
    opcode = copy.deepcopy(sparse.operatorCodes[sfc[0].opcodeIndex])
    dense.operatorCodes.append(opcode)
    code_index = len(dense.operatorCodes) - 1
    dg, sg = dense.subgraphs[0], sparse.subgraphs[0]
    for k in keep:
        dw = dg.tensors[int(dfc[k].inputs[1])]
        sw = sg.tensors[int(sfc[k].inputs[1])]
        if list(dw.shape) != list(sw.shape) or dw.type != sw.type:
            raise ValueError(f"FC #{k}: weight {list(dw.shape)} vs {list(sw.shape)} differ")
        dw.sparsity = copy.deepcopy(sw.sparsity)
        dw.quantization = copy.deepcopy(sw.quantization)
        buf = fb.schema.BufferT()
        buf.data = np.frombuffer(fb.buffer_data(sparse, sdata, sw.buffer), np.uint8).copy()
        dense.buffers.append(buf)
        old, dw.buffer = dw.buffer, len(dense.buffers) - 1
        dfc[k].opcodeIndex = code_index
        if not any(t.buffer == old for t in dg.tensors):
            dense.buffers[old] = fb.schema.BufferT()  # drop the dense copy
    return dense


def choose(dense_bytes, sparse_bytes, threads=1, rounds=12, margin=0.97):
    """Measures each candidate layer and returns the assembled model bytes with decisions."""
    cands = candidates(sparse_bytes)
    names = {c[1] for c in cands}
    _, smodel = fb.load(sparse_bytes)
    other = [{"tensor": t.name.decode(), "decision": "dense",
              "reason": "no sparse kernel for this op: the converter would store it sparse "
                        "behind a DENSIFY op (smaller file, same speed); sparse='force' does"}
             for t in smodel.subgraphs[0].tensors
             if t.sparsity is not None and t.name.decode() not in names]
    if not cands:
        if not other:
            return dense_bytes
        model = fb.load(dense_bytes)[1]
        fb.add_metadata(model, other)
        return fb.pack(model)
    variants = {"dense": dense_bytes}
    for k, *_ in cands:
        variants[k] = fb.pack(compose(dense_bytes, sparse_bytes, {k}))
    times = _timing.interleaved(variants, threads=threads, rounds=rounds)
    keep, decisions = set(), []
    for k, name, block, density in cands:
        what = f"{block} block" if block != "1x1" else "random (1x1)"
        ratio = times.ratio(k, "dense")
        if ratio is None:
            decisions.append({"tensor": name, "decision": "dense", "reason":
                              f"{what}, {1 - density:.0%} zeros: the sparse kernel failed to "
                              f"run ({times.errors[k]})"})
            continue
        fast = ratio < margin
        if fast:
            keep.add(k)
        decisions.append({"tensor": name, "decision": "sparse" if fast else "dense", "reason":
                          f"{what}, {1 - density:.0%} zeros: model time {ratio:.2f}x of dense "
                          "with this layer sparse" +
                          ("" if fast else " (the dense XNNPACK kernel is as fast or faster)")})
    final = compose(dense_bytes, sparse_bytes, keep)
    if keep:
        final_bytes = fb.pack(final)
        check = _timing.interleaved({"final": final_bytes, "dense": dense_bytes},
                                    threads=threads, rounds=rounds)
        ratio = check.ratio("final", "dense")
        if ratio is None or ratio > 1.0:
            why = (f"assembled model measured {ratio:.2f}x dense" if ratio is not None
                   else f"assembled model failed to run ({check.errors['final']})")
            decisions = [dict(d, decision="dense", reason=d["reason"] + f"; reverted: {why}")
                         for d in decisions]
            final = fb.load(dense_bytes)[1]
        else:
            decisions.append({"tensor": "(whole model)", "decision": "checked",
                              "reason": f"assembled model {ratio:.2f}x dense time"})
    fb.add_metadata(final, decisions + other)
    return fb.pack(final)
