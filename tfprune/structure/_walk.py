"""Flattens a Functional/Sequential model (nested models inlined) into calls.

Both the dependency graph and the FLOP counter need the same thing: every
layer call in topological order with its input and output tensors, where a
nested model's inputs are *the same tensors* as the outer tensors it was
called on. Keras keeps one graph per model, so we stitch them with an alias
table instead of re-tracing the model.
"""

import dataclasses

import keras

__all__ = ["Call", "walk", "check_graph_model"]


@dataclasses.dataclass
class Call:
    """One layer call: ``layer`` at ``path`` reading ``inputs``, writing ``outputs``.

    ``inputs``/``outputs`` are tensor keys (ints); ``in_shapes``/``out_shapes``
    their shapes (batch dim included, maybe ``None``).
    """

    layer: object
    path: str
    inputs: list
    outputs: list
    in_shapes: list
    out_shapes: list


def _functional(model):
    if isinstance(model, keras.Sequential):
        return getattr(model, "_functional", None)
    return model


def check_graph_model(model, what):
    """Raises a clear error unless ``model`` is a built Functional/Sequential model."""
    if not isinstance(model, keras.Model):
        raise TypeError(f"{what} expects a keras.Model; got {type(model).__name__}.")
    if not isinstance(model, keras.Sequential) and not hasattr(model, "_nodes_by_depth"):
        raise ValueError(
            f"Model '{model.name}' is a subclassed model ({type(model).__name__}); "
            f"{what} needs the layer graph of a Functional or Sequential model. "
            "Rebuild it with the Functional API (keras.Model(inputs, outputs)).")
    if _functional(model) is None:
        raise ValueError(
            f"Sequential model '{model.name}' has no Input: give it "
            f"keras.Input(shape) as first layer so {what} can see its graph.")


def _is_nested_graph(op):
    return isinstance(op, keras.Model) and (
        isinstance(op, keras.Sequential) or hasattr(op, "_nodes_by_depth")
    ) and _functional(op) is not None


def walk(model):
    """Returns ``(calls, input_keys, output_keys, nested)`` of ``model``.

    ``nested`` maps ``id(nested model)`` to the keys of the tensors it was
    called on.

    >>> import keras
    >>> m = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, name="d")])
    >>> calls, ins, outs, nested = walk(m)
    >>> [c.path for c in calls], calls[0].out_shapes
    (['d'], [(None, 2)])
    """
    alias, calls, nested = {}, [], {}

    def key(t):
        return alias.get(id(t), id(t))

    def visit(model, prefix):
        fm = _functional(model)
        for depth in sorted(fm._nodes_by_depth, reverse=True):
            for node in fm._nodes_by_depth[depth]:
                if node.is_input:
                    continue
                op = node.operation
                ins = [key(t) for t in node.input_tensors]
                if _is_nested_graph(op):
                    nested[id(op)] = ins
                    inner = _functional(op)
                    for t, k in zip(keras.tree.flatten(inner.inputs), ins):
                        alias[id(t)] = k
                    visit(op, prefix + op.name + "/")
                    for t_outer, t_inner in zip(node.output_tensors,
                                                keras.tree.flatten(inner.outputs)):
                        alias[id(t_outer)] = key(t_inner)
                    continue
                calls.append(Call(
                    op, prefix + op.name, ins, [key(t) for t in node.output_tensors],
                    [tuple(t.shape) for t in node.input_tensors],
                    [tuple(t.shape) for t in node.output_tensors]))

    fm = _functional(model)
    visit(model, "")
    return (calls, [key(t) for t in keras.tree.flatten(fm.inputs)],
            [key(t) for t in keras.tree.flatten(fm.outputs)], nested)
