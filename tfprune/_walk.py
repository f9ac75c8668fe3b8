"""Walking Keras models: layers, wrappers, prunable weights and layer calls.

A leaf module (it imports only :mod:`tfprune.prunable` and
:mod:`tfprune.wrappers`) so every layer of tfprune can walk models the same
way: ``api``, ``reporting``, ``scoring``, ``callbacks``, ``structure`` and
``sensitivity`` all use it. ``walk_layers`` and ``find_wrappers`` are also
public as ``tfprune.api.walk_layers`` / ``tfprune.api.find_wrappers``.

:func:`walk` flattens a Functional/Sequential model (nested models inlined)
into layer calls: the dependency graph and the FLOP counter need every layer
call in topological order with its input and output tensors, where a nested
model's inputs are *the same tensors* as the outer tensors it was called on.
Keras keeps one graph per model, so the graphs are stitched with an alias
table instead of re-tracing the model.
"""

import dataclasses

import keras

from tfprune import prunable
from tfprune.wrappers import PruneWrapper

__all__ = ["walk_layers", "find_wrappers", "is_graph_model", "enumerate_layers",
           "layer_weights", "weights_by_key", "Call", "Ref", "walk", "check_graph_model",
           "is_layer"]


# -- layers and wrappers ---------------------------------------------------------

def walk_layers(model, prefix=""):
    """Yields ``(path, layer)`` for every layer, recursing into nested models.

    Wrappers are yielded, not their inner layers. ``path`` is the layer's
    name prefixed by the names of enclosing nested models (``"block/conv"``).

    >>> import keras
    >>> inner = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2, name="d")],
    ...                          name="block")
    >>> m = keras.Sequential([keras.Input((2,)), inner, keras.layers.Dense(1, name="o")])
    >>> [path for path, _ in walk_layers(m)]
    ['block', 'block/d', 'o']
    """
    for layer in getattr(model, "layers", []):
        path = prefix + layer.name
        yield path, layer
        if isinstance(layer, keras.Model):
            yield from walk_layers(layer, path + "/")


def find_wrappers(model):
    """All :class:`PruneWrapper` layers of ``model`` (recursing), deduplicated.

    Also finds wrappers held as attributes of subclassed models.

    >>> import keras, tfprune as tp
    >>> m = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2, name="d")])
    >>> [w.name for w in find_wrappers(tp.prune(m, schedule=0.5))]
    ['d']
    """
    if isinstance(model, PruneWrapper):
        return [model]
    found, seen = [], set()
    candidates = [l for _, l in walk_layers(model)] if isinstance(
        model, (keras.Sequential, keras.Model)) else []
    if hasattr(model, "_flatten_layers"):
        candidates += list(model._flatten_layers(include_self=False, recursive=True))
    for layer in candidates:
        if isinstance(layer, PruneWrapper) and id(layer) not in seen:
            seen.add(id(layer))
            found.append(layer)
    return found


def is_graph_model(model):
    """True for Sequential and Functional models (whose graph can be cloned).

    >>> import keras
    >>> is_graph_model(keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)]))
    True
    """
    return isinstance(model, keras.Sequential) or (
        isinstance(model, keras.Model) and hasattr(model, "_operations")
        and type(model).__name__ in ("Functional", "Sequential"))


def enumerate_layers(model):
    """``(path, layer)`` pairs that hold prunable weights: wrappers, not their inner layers.

    Graph models are walked by path; subclassed models by their tracked
    layers; a single layer gives itself.

    >>> import keras
    >>> enumerate_layers(keras.layers.Dense(2, name="d"))[0][0]
    'd'
    """
    if not isinstance(model, keras.Model):
        return [(model.name, model)]
    if is_graph_model(model):
        return list(walk_layers(model))
    layers = list(model._flatten_layers(include_self=False, recursive=True))
    inner = {id(l.layer) for l in layers if isinstance(l, PruneWrapper)}
    return [(l.name, l) for l in layers if id(l) not in inner]


def layer_weights(layer):
    """The :class:`~tfprune.prunable.PrunableWeight` list of a wrapper or a built layer.

    ``[]`` for unbuilt layers and layers with nothing to prune.

    >>> import keras
    >>> d = keras.layers.Dense(2); d.build((None, 3))
    >>> [w.key for w in layer_weights(d)], layer_weights(keras.layers.ReLU())
    (['kernel'], [])
    """
    if isinstance(layer, PruneWrapper):
        return layer.prunable_weights
    if prunable.is_prunable(layer) and getattr(layer, "built", False):
        return prunable.prunable_weights(layer)
    return []


def weights_by_key(layer):
    """``{weight name relative to the layer: variable}`` for every weight of ``layer``.

    >>> import keras
    >>> d = keras.layers.Dense(2); d.build((None, 3))
    >>> sorted(weights_by_key(d))
    ['bias', 'kernel']
    """
    return {prunable.relative_key(layer, w): w for w in layer.weights}


# -- layer calls of a graph model ------------------------------------------------

def is_layer(op):
    """True for a Keras ``Layer``; False for a bare ``keras.ops`` operation node.

    Keras 3 functional graphs hold both: ``x + 3`` or ``keras.ops.mean(x)``
    on a symbolic tensor become operation nodes without weights or config.

    >>> import keras
    >>> x = keras.Input((4,))
    >>> m = keras.Model(x, keras.layers.Dense(2)(x) + 1.0)
    >>> [is_layer(op) for op in m.operations[1:]]
    [True, False]
    """
    return isinstance(op, keras.layers.Layer)


@dataclasses.dataclass(frozen=True)
class Ref:
    """Stands for a graph tensor inside :attr:`Call.args`: its key and shape."""

    key: int
    shape: tuple


@dataclasses.dataclass
class Call:
    """One layer (or ``keras.ops`` operation) call: ``layer`` at ``path``.

    ``inputs``/``outputs`` are tensor keys (ints); ``in_shapes``/``out_shapes``
    their shapes (batch dim included, maybe ``None``). ``args``/``kwargs``
    are the call's arguments with every graph tensor replaced by a
    :class:`Ref` and constants kept as they are (``x + 3.0`` gives
    ``args == (Ref(...), 3.0)``).

    >>> import keras
    >>> m = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, name="d")])
    >>> call = walk(m)[0][0]
    >>> call.path, call.in_shapes, call.out_shapes
    ('d', [(None, 4)], [(None, 2)])
    """

    layer: object
    path: str
    inputs: list
    outputs: list
    in_shapes: list
    out_shapes: list
    args: tuple = ()
    kwargs: dict = dataclasses.field(default_factory=dict)

    @property
    def is_op(self):
        """True for a ``keras.ops`` operation node (not a Layer)."""
        return not is_layer(self.layer)

    def run(self, fill):
        """Runs the call eagerly with each :class:`Ref` replaced by ``fill(ref)``."""
        def sub(x):
            return fill(x) if isinstance(x, Ref) else x
        args = keras.tree.map_structure(sub, self.args, none_is_leaf=True)
        kwargs = keras.tree.map_structure(sub, self.kwargs, none_is_leaf=True)
        if is_layer(self.layer):
            kwargs.setdefault("training", False)
        return self.layer(*args, **kwargs)


def _functional(model):
    if isinstance(model, keras.Sequential):
        return getattr(model, "_functional", None)
    return model


def check_graph_model(model, owner):
    """Raises a clear error unless ``model`` is a built Functional/Sequential model.

    >>> import keras
    >>> check_graph_model(keras.layers.Dense(1), "count")
    Traceback (most recent call last):
    ...
    TypeError: count expects a keras.Model; got Dense.
    """
    if not isinstance(model, keras.Model):
        raise TypeError(f"{owner} expects a keras.Model; got {type(model).__name__}.")
    if not isinstance(model, keras.Sequential) and not hasattr(model, "_nodes_by_depth"):
        raise ValueError(
            f"Model '{model.name}' is a subclassed model ({type(model).__name__}); "
            f"{owner} needs the layer graph of a Functional or Sequential model. "
            "Rebuild it with the Functional API (keras.Model(inputs, outputs)); "
            "tfprune.structure.explain(functional_model) then shows owner can be cut. "
            "To prune the subclassed model's weights in place (masks, not removed "
            "channels), wrap its layers with tfprune.prune_layer.")
    if _functional(model) is None:
        raise ValueError(
            f"Sequential model '{model.name}' has no Input: give it "
            f"keras.Input(shape) as first layer so {owner} can see its graph.")


def _is_nested_graph(op):
    return isinstance(op, keras.Model) and (
        isinstance(op, keras.Sequential) or hasattr(op, "_nodes_by_depth")
    ) and _functional(op) is not None


def _arguments(node, key):
    """A node's ``(args, kwargs)`` with its tensors replaced by :class:`Ref` s."""
    arguments = getattr(node, "arguments", None)
    if arguments is None:  # pragma: no cover - older Keras
        return tuple(Ref(key(t), tuple(t.shape)) for t in node.input_tensors), {}

    def ref(x):
        if isinstance(x, keras.KerasTensor):
            return Ref(key(x), tuple(x.shape))
        return x
    return (tuple(keras.tree.map_structure(ref, list(arguments.args), none_is_leaf=True)),
            dict(keras.tree.map_structure(ref, dict(arguments.kwargs), none_is_leaf=True)))


def walk(model):
    """Returns ``(calls, input_keys, output_keys, nested)`` of ``model``.

    ``calls`` are the :class:`Call` objects in topological order; ``nested``
    maps ``id(nested model)`` to the keys of the tensors it was called on.

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
                args, kwargs = _arguments(node, key)
                calls.append(Call(
                    op, prefix + op.name, ins, [key(t) for t in node.output_tensors],
                    [tuple(t.shape) for t in node.input_tensors],
                    [tuple(t.shape) for t in node.output_tensors], args, kwargs))

    fm = _functional(model)
    visit(model, "")
    return (calls, [key(t) for t in keras.tree.flatten(fm.inputs)],
            [key(t) for t in keras.tree.flatten(fm.outputs)], nested)
