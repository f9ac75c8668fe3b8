"""``to_tflite(sparse="auto")``: each FC layer gets the encoding measured fastest (private).

The converter's ``EXPERIMENTAL_SPARSITY`` is model-wide, and a model converted
with it is not the dense model plus sparse weights: its FULLY_CONNECTED op
code gets a newer version that XNNPACK declines even for the layers whose
weights stay dense (measured: an int8 MLP densified back runs 10x slower, on
the builtin kernels). It also picks one encoding per weight, and stores a
random-sparse float weight behind a DENSIFY op, which never reaches the
random-sparsity kernel. So we start from the *dense* conversion and write,
per layer and per encoding the FC kernels take (float32: random and 1x4
blocks; int8: random and 1x16 blocks), a variant with only that layer sparse
(under a separate FC op code with the sparse op version). Every variant is
checked against the dense model's outputs and timed against it in the same
interleaved rounds; a layer takes its fastest encoding when that beats dense
by ``margin``.

Each layer's row in the decision table holds what was measured: the median
invoke time of the dense model and of each variant (``timings_ms``), their
paired ratio to dense (``ratio``), the encodings that could not be timed and
why (``failed``), and those not measured and why (``not_measured``).
"""

import numpy as np

from tfprune.export import _batch
from tfprune.export import _encode
from tfprune.export import _flatbuffer as fb
from tfprune.export import _layers
from tfprune.export import _timing

SPARSE_FC_VERSION = 8   # the FULLY_CONNECTED op version the converter gives sparse weights
ENCODINGS = {"random": 1, "1x4": 4, "1x16": 16}
KERNEL_ENCODINGS = {fb.schema.TensorType.FLOAT32: ("random", "1x4"),
                    fb.schema.TensorType.INT8: ("random", "1x16")}


def constant_weights(data, model, tensor):
    raw = fb.buffer_data(model, data, tensor.buffer)
    dtype = fb.NUMPY_TYPES.get(tensor.type)
    if not raw or dtype is None or tensor.sparsity is not None:
        return None
    return np.frombuffer(raw, dtype=dtype).reshape([int(d) for d in tensor.shape])


def compose(dense_bytes, choice):
    """The dense model with FC op ``k`` stored in encoding ``choice[k]`` (a ``schema.ModelT``)."""
    data, model = fb.load(dense_bytes)
    if not choice:
        return model
    graph = model.subgraphs[0]
    sparse_codes = {}
    for k, encoding in choice.items():
        op = graph.operators[k]
        if op.opcodeIndex not in sparse_codes:  # the dense FC ops keep their op code
            base = model.operatorCodes[op.opcodeIndex]
            code = fb.schema.OperatorCodeT()
            code.__dict__.update(vars(base))
            code.version = max(int(base.version), SPARSE_FC_VERSION)
            model.operatorCodes.append(code)
            sparse_codes[op.opcodeIndex] = len(model.operatorCodes) - 1
        tensor = graph.tensors[int(op.inputs[1])]
        weights = constant_weights(data, model, tensor)
        sparsity, values = _encode.encode(weights, ENCODINGS[encoding])
        tensor.sparsity = sparsity
        buf = fb.schema.BufferT()
        buf.data = np.frombuffer(np.ascontiguousarray(values).tobytes(), np.uint8).copy()
        model.buffers.append(buf)
        old, tensor.buffer = tensor.buffer, len(model.buffers) - 1
        op.opcodeIndex = sparse_codes[op.opcodeIndex]
        if not any(t.buffer == old for t in graph.tensors):
            model.buffers[old] = fb.schema.BufferT()  # drop the dense copy
    return model


def _plan(data, model, row, min_zeros):
    """The encodings of an FC row worth timing; fills ``row["not_measured"]`` for the rest."""
    tensor = model.subgraphs[0].tensors[row["weight"]]
    dtype = fb.TYPE_NAMES.get(tensor.type, str(tensor.type))
    weights = constant_weights(data, model, tensor) if row["via"] is None else None
    row.update(shape=[int(d) for d in tensor.shape], dtype=dtype)
    names = KERNEL_ENCODINGS.get(tensor.type, ("random", "1x4"))
    source = constant_weights(data, model, tensor)
    if source is not None:
        row["zeros"] = float(np.mean(source == 0))
    if weights is None or tensor.type not in KERNEL_ENCODINGS or weights.ndim != 2:
        how = f"computed by {row['via']}" if row["via"] else "not a constant"
        why = (f"weight is {dtype}, {how}: the sparse FC kernels take constant float32 "
               "(random, 1x4) or int8 (random, 1x16) weights")
        row["not_measured"] = {name: why for name in names}
        return []
    plan = []
    for name in names:
        block = ENCODINGS[name]
        stored = _encode.stored_fraction(weights, block)
        if stored is None:
            row["not_measured"][name] = f"{weights.shape[-1]} inputs: not a multiple of {block}"
        elif stored > 1 - min_zeros:
            unit = "weights" if block == 1 else f"1x{block} blocks"
            row["not_measured"][name] = (f"only {1 - stored:.0%} of {unit} are zero (timed "
                                         f"from {min_zeros:.0%})")
        else:
            plan.append(name)
    return plan


def run_outputs(data):
    interp = _timing.interpreter(data)
    _timing.random_inputs(interp)
    interp.invoke()
    return [interp.get_tensor(d["index"]).copy() for d in interp.get_output_details()]


def same_outputs(data, reference):
    """None when ``data`` runs and matches ``reference`` outputs, else why not."""
    try:
        got = run_outputs(data)
    except Exception as e:  # noqa: BLE001 - the reason is recorded, not raised
        return f"failed to run ({type(e).__name__}: {str(e).splitlines()[0][:160]})"
    if not all(_batch.close(g, r) for g, r in zip(got, reference)):
        diff = max(float(np.max(np.abs(g.astype(np.float64) - r))) for g, r in zip(got, reference))
        return f"outputs differ from the dense model (max abs diff {diff:.3g})"
    return None


def _ms(times, name):
    median = times.median(name)
    return None if median is None else round(median * 1e3, 6)


def _not_measured(row):
    by_reason = {}
    for name, why in row["not_measured"].items():
        by_reason.setdefault(why, []).append(name)
    return "not measured: " + "; ".join(f"{', '.join(names)}: {why}"
                                        for why, names in by_reason.items())


def _explain(row, margin):
    parts = []
    if row["ratio"]:
        parts.append("model time vs dense with only this layer sparse: " + ", ".join(
            f"{name} {ratio:.2f}x" for name, ratio in row["ratio"].items()))
    parts += [f"{name} {why}" for name, why in row["failed"].items()]
    if row["decision"] == "dense":
        parts.append(f"no encoding below {margin:.2f}x: dense (XNNPACK) kept"
                     if row["ratio"] else "dense (XNNPACK) kept")
    else:
        parts.append(f"fastest: {row['decision']}")
    return "; ".join(parts)


def choose(dense_bytes, layers=(), threads=1, rounds=12, margin=0.97, min_zeros=0.3):
    """The dense model with each FC layer in its fastest measured encoding, plus decisions.

    ``layers``: ``[(Keras layer path, kernel shape)]`` to name the rows.
    Returns the dense bytes unchanged when no weight has ``min_zeros`` zeros (nothing to record).
    """
    data, model = fb.load(dense_bytes)
    graph = model.subgraphs[0]
    rows, other, variants = [], [], {}
    for row in _layers.weight_ops(model, layers):
        tensor = graph.tensors[row["weight"]]
        if row["type"] != "FULLY_CONNECTED":
            weights = constant_weights(data, model, tensor)
            if weights is not None and np.mean(weights == 0) >= min_zeros:
                other.append({"layer": row["layer"], "op": row["op"], "type": row["type"],
                              "tensor": tensor.name.decode(), "zeros": float(np.mean(weights == 0)),
                              "decision": "dense", "reason": (
                                  f"not measured: LiteRT has no sparse {row['type']} kernel; "
                                  "sparse storage would add a DENSIFY op before the dense "
                                  "kernel (smaller file, same kernel); sparse='force' does")})
            continue
        row = dict(row, tensor=tensor.name.decode(), decision="dense", timings_ms={}, ratio={},
                   failed={}, not_measured={})
        for name in _plan(data, model, row, min_zeros):
            variants[(row["op"], name)] = fb.pack(compose(dense_bytes, {row["op"]: name}))
        rows.append(row)
    if not variants:  # nothing to time: say why for the layers that have zeros
        rows = [dict(row, reason=_not_measured(row))
                for row in rows if row.get("zeros", 0) >= min_zeros]
        for row in rows:
            for key in ("weight", "via", "timings_ms", "ratio", "failed"):
                row.pop(key)
        if not rows + other:
            return dense_bytes
        fb.add_metadata(model, rows + other)
        return fb.pack(model)
    reference = run_outputs(dense_bytes)
    failed = {key: why for key, v in variants.items()
              if (why := same_outputs(v, reference)) is not None}
    times = _timing.interleaved({"dense": dense_bytes, **{k: v for k, v in variants.items()
                                                          if k not in failed}},
                                threads=threads, rounds=rounds)
    keep = {}
    for row in rows:
        row["timings_ms"]["dense"] = _ms(times, "dense")
        for (op, name) in variants:
            if op != row["op"]:
                continue
            why = failed.get((op, name)) or times.errors.get((op, name))
            if why is not None:
                row["failed"][name] = why
                continue
            row["timings_ms"][name] = _ms(times, (op, name))
            row["ratio"][name] = round(times.ratio((op, name), "dense"), 4)
        if row["ratio"]:
            best = min(row["ratio"], key=row["ratio"].get)
            if row["ratio"][best] < margin:
                row["decision"] = keep[row["op"]] = best
        if row["ratio"] or row["failed"]:
            row["reason"] = _explain(row, margin)
        else:
            row["reason"] = _not_measured(row)
        for key in ("weight", "via"):
            row.pop(key)
    final = model
    if keep:
        rows.append(_check(dense_bytes, keep, rows, reference, threads, rounds))
        if rows[-1]["decision"] == "checked":
            final = compose(dense_bytes, keep)
    fb.add_metadata(final, rows + other)
    return fb.pack(final)


def _check(dense_bytes, keep, rows, reference, threads, rounds):
    """The whole-model row: the assembled model timed against dense (reverts rows if slower)."""
    check = {"layer": "(whole model)", "decision": "dense"}
    final = fb.pack(compose(dense_bytes, keep))
    why = same_outputs(final, reference)
    times = _timing.interleaved({"final": final, "dense": dense_bytes},
                                threads=threads, rounds=rounds)
    ratio = times.ratio("final", "dense")
    check["timings_ms"] = {"dense": _ms(times, "dense"), "assembled": _ms(times, "final")}
    if why is None and ratio is None:
        why = f"failed to run ({times.errors.get('final')})"
    if why is None and ratio > 1.0:
        why = f"measured {ratio:.2f}x dense"
    if why is not None:
        for row in rows:
            if row["decision"] != "dense":
                row["reverted"] = row["decision"]
                row["decision"] = "dense"
                row["reason"] += f"; reverted: assembled model {why}"
        return dict(check, reason=f"assembled model {why}: dense model returned")
    check["ratio"] = {"assembled": round(ratio, 4)}
    return dict(check, decision="checked", reason=(
        f"assembled model {check['timings_ms']['assembled'] * 1e3:.1f} us, {ratio:.2f}x "
        "dense time"))
