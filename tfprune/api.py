"""User-facing entry points: ``prune``, ``prune_layer``, ``strip``, ``sparsity``, ``summary``."""

import os
import warnings

import keras

import tfprune._checks as checks
from tfprune import criteria as criteria_lib
from tfprune import prunable
from tfprune import schedules as schedules_lib
from tfprune._followers import link_batchnorms
from tfprune._jaxbuffers import free
from tfprune._walk import find_wrappers, is_graph_model, walk_layers
from tfprune._zeroinit import restore_initializers, zero_initializers
from tfprune.reporting import sparsity, summary
from tfprune.wrappers import PruneWrapper

# walk_layers, find_wrappers (tfprune._walk) and sparsity, summary
# (tfprune.reporting) are re-exported: tfprune.api is where users find them.
__all__ = ["prune", "prune_layer", "strip", "strip_layer", "sparsity", "summary",
           "walk_layers", "find_wrappers", "find_layers"]


def _load_if_path(model):
    if isinstance(model, (str, os.PathLike)):
        return keras.saving.load_model(model)
    return model


def find_layers(model, names, what="names"):
    """The layers of ``model`` that ``names`` name, in order.

    A name is a layer path (``"block/conv"`` inside nested models) or a
    layer name that is unique in the model. Unknown or ambiguous names raise
    a ``ValueError`` naming the argument ``what`` and suggesting close names.

    >>> import keras, tfprune as tp
    >>> m = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2, name="dense")],
    ...                      name="m")
    >>> [l.name for l in tp.api.find_layers(m, ["dense"])]
    ['dense']
    >>> tp.api.find_layers(m, ["dnse"], "skip")
    Traceback (most recent call last):
    ...
    ValueError: `skip` names layer 'dnse', which is not in model 'm'. Did you mean 'dense'?
    """
    paths = dict(walk_layers(model))
    by_name = {}
    for path, layer in paths.items():
        by_name.setdefault(layer.name, []).append(path)
    all_names = sorted(set(paths) | set(by_name))

    def resolve(name):
        if not isinstance(name, str):
            raise TypeError(f"`{what}` keys must be layer names (str); got {name!r}.")
        if name in paths:
            return paths[name]
        if name in by_name:
            if len(by_name[name]) > 1:
                raise ValueError(
                    f"`{what}` names layer '{name}', which is ambiguous in this "
                    f"model: use one of {by_name[name]}.")
            return paths[by_name[name][0]]
        raise ValueError(
            f"`{what}` names layer '{name}', which is not in model "
            f"'{model.name}'.{checks.did_you_mean(name, all_names)}")

    return [resolve(name) for name in names]


def _validate_names(model, sparsity, skip):
    per_layer = {}
    if sparsity is not None:
        if isinstance(sparsity, dict):
            items = sparsity.items()
        else:
            raise TypeError(
                "`sparsity` must be a dict {layer name: final sparsity}; got "
                f"{type(sparsity).__name__}. For one target for every layer, "
                "set it in the schedule.")
        for name, value in items:
            layer = find_layers(model, [name], "sparsity")[0]
            if not prunable.is_prunable(layer):
                raise ValueError(
                    f"`sparsity` names layer '{name}' ({type(layer).__name__}), "
                    "which has no prunable weights (only kernels of Dense, Conv, "
                    "Embedding, RNN and attention layers, or layers with "
                    "get_prunable_weights(), are pruned).")
            per_layer[id(layer)] = checks.sparsity(
                f"sparsity['{name}']", value, "tfprune.prune")
    skipped = {id(layer) for layer in find_layers(model, skip or (), "skip")}
    return per_layer, skipped


def _clone_layer(layer, initialisers=None):
    """A fresh copy of ``layer`` from its config, built as it is.

    With a list ``initialisers`` the copy is built with zeros initialisers
    (its weights are copied over next) and ``(copy, originals)`` is appended
    for :func:`restore_initializers`.
    """
    new = layer.__class__.from_config(layer.get_config())
    if initialisers is not None:
        initialisers.append((new, zero_initializers(new)))
    if getattr(layer, "built", False) and not new.built:  # keras-hub layers build in __init__
        build_config = layer.get_build_config()
        if build_config:
            new.build_from_config(build_config)
    return new


def _copy_weights(pairs):
    jax_backend = keras.backend.backend() == "jax"
    for src, dst in pairs:
        if not getattr(src, "weights", None):
            continue
        if [tuple(v.shape) for v in src.weights] == [tuple(v.shape) for v in dst.weights]:
            for a, b in zip(src.weights, dst.weights):
                if a is b:   # a layer shared by both models: nothing to copy (or free)
                    continue
                # Variable to variable: no NumPy copy of large weights. On JAX a
                # device copy (shared, the buffer would be freed when one model's
                # fit donates it to its train step) over the clone's zeros, freed first.
                if jax_backend:
                    free(b)
                b.assign(keras.ops.copy(a.value) if jax_backend else a)
        else:
            dst.set_weights(src.get_weights())  # raises its clear shape error


def prune(model, *, schedule, criterion="magnitude", granularity="unstructured",
          sparsity=None, skip=None, scope="layer"):
    """Returns a copy of ``model`` whose prunable layers are wrapped for pruning.

    The original model is left untouched (weights are copied). Works on
    Sequential and Functional models, nested models and shared layers; for
    subclassed models wrap layers with :func:`prune_layer` instead.

    Args:
        model: a built ``keras.Model`` (or the path of a ``.keras`` file).
        schedule: a ``tfprune`` schedule (``PolynomialDecay``,
            ``ConstantSparsity``, ``OneShot``) or a number (one-shot target).
        criterion: name or ``tfprune.criteria.Criterion`` (default magnitude).
        granularity: name or ``tfprune.granularity.Granularity``.
        sparsity: optional ``{layer name: final sparsity}`` overriding the
            schedule's final value per layer (keeps its timing).
        skip: layer names to leave dense.
        scope: ``"layer"`` (every layer to its target) or ``"global"`` (one
            threshold on scores across all pruned layers, so robust layers end
            sparser; each weight keeps at least one group).

    Returns:
        A new ``keras.Model``; compile it and train with
        ``callbacks=[tfprune.PruningCallback()]``.

    Example:

    >>> import keras, numpy as np, tfprune as tp
    >>> model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, name="dense"),
    ...                           keras.layers.Dense(2, name="out")])
    >>> pruned = tp.prune(model, schedule=tp.OneShot(0.5), skip=["out"])
    >>> pruned.compile("adam", "mse")
    >>> _ = pruned.fit(np.ones((4, 8)), np.ones((4, 2)), verbose=0,
    ...                callbacks=[tp.PruningCallback()])
    >>> tp.sparsity(pruned)["dense/kernel"]
    0.5
    """
    model = _load_if_path(model)
    if isinstance(model, keras.layers.Layer) and not isinstance(model, keras.Model):
        raise TypeError(
            f"tfprune.prune expects a keras.Model; got layer '{model.name}'. "
            "Use tfprune.prune_layer(layer, ...) for a single layer.")
    if not isinstance(model, keras.Model):
        raise TypeError(f"tfprune.prune expects a keras.Model; got {type(model).__name__}.")
    if find_wrappers(model):
        raise ValueError(
            f"Model '{model.name}' is already pruned (it contains PruneWrapper "
            "layers). Continue training it with tfprune.PruningCallback, or call "
            "tfprune.strip(model) first to prune the stripped model again.")
    if not is_graph_model(model):
        raise ValueError(
            f"Model '{model.name}' is a subclassed model ({type(model).__name__}); "
            "tfprune.prune can only rebuild Sequential and Functional models. Wrap "
            "the layers inside your model with tfprune.prune_layer(...) instead.")
    if not model.built:
        raise ValueError(
            f"Model '{model.name}' is not built: give it an Input or call it on "
            "data once before pruning.")
    schedule = schedules_lib.get(schedule)
    if schedule is None:
        raise ValueError("tfprune.prune: `schedule` is required.")
    per_layer, skipped = _validate_names(model, sparsity, skip)
    if scope not in ("layer", "global"):
        raise ValueError(f"tfprune.prune: scope must be 'layer' or 'global'; got {scope!r}.")
    if scope == "global" and per_layer:
        raise ValueError("tfprune.prune: scope='global' decides each layer's sparsity "
                         "itself; it cannot be combined with per-layer `sparsity`.")

    pairs, initialisers, unscored = [], [], []
    scorer = criteria_lib.get(criterion)
    for _, layer in walk_layers(model):
        reason = id(layer) in per_layer and scorer.unsupported(layer)
        if reason:
            raise ValueError(f"tfprune.prune: `sparsity` names layer '{layer.name}', which "
                             f"criterion {type(scorer).__name__} cannot score: {reason}.")

    def clone_fn(layer):
        new = _clone_layer(layer, initialisers)
        pairs.append((layer, new))
        if id(layer) in skipped or not prunable.is_prunable(layer):
            return new
        if not prunable.prunable_weights(layer):
            return new
        if scorer.unsupported(layer):   # e.g. wanda on a depthwise conv: left dense, said below
            unscored.append(f"'{layer.name}' ({type(layer).__name__})")
            return new
        layer_schedule = schedule
        if id(layer) in per_layer:
            layer_schedule = schedule.with_final(per_layer[id(layer)])
        return PruneWrapper(new, layer_schedule, criterion=criterion,
                            granularity=granularity, scope=scope)

    pruned = keras.models.clone_model(model, clone_function=clone_fn, recursive=True)
    for new, saved in initialisers:
        restore_initializers(new, saved)
    _copy_weights(pairs)
    if unscored:
        more = f" and {len(unscored) - 5} more" if len(unscored) > 5 else ""
        warnings.warn(f"tfprune.prune: criterion {type(scorer).__name__} cannot score "
                      f"{', '.join(unscored[:5])}{more}: left dense (prune them with another "
                      "criterion separately, or pass skip=[...] to say so).")
    if not find_wrappers(pruned):
        warnings.warn(f"tfprune.prune: model '{model.name}' has no prunable layer.")
    link_batchnorms(pruned)  # a pruned unit stays 0 after its BatchNorm
    return pruned


def prune_layer(layer, *, schedule, criterion="magnitude", granularity="unstructured"):
    """Wraps one layer for pruning, for use inside subclassed models.

    Example:

    >>> import keras, tfprune as tp
    >>> class Net(keras.Model):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.hidden = tp.prune_layer(keras.layers.Dense(32, activation="relu"),
    ...                                      schedule=tp.OneShot(0.8))
    ...         self.out = keras.layers.Dense(10)
    ...     def call(self, x):
    ...         return self.out(self.hidden(x))
    """
    return PruneWrapper(layer, schedule, criterion=criterion, granularity=granularity)


def strip_layer(wrapper):
    """Returns a plain copy of a wrapped layer with its masks folded in.

    For subclassed models, whose graph ``strip`` cannot rebuild.

    >>> import keras, tfprune as tp
    >>> w = tp.prune_layer(keras.layers.Dense(4, name="d"), schedule=tp.OneShot(0.5))
    >>> w.build((None, 8)); w.update_masks(step=0)
    >>> plain = tp.strip_layer(w)
    >>> type(plain).__name__, tp.sparsity(plain)["d/kernel"]
    ('Dense', 0.5)
    """
    if not isinstance(wrapper, PruneWrapper):
        return wrapper
    inner = wrapper.layer
    new = _clone_layer(inner)
    masked = wrapper.variable_masks()  # kernels, and biases of fully masked units
    values = []
    for v in inner.weights:
        value = keras.ops.convert_to_numpy(v)
        if id(v) in masked:
            value = value * masked[id(v)].astype(value.dtype)
        values.append(value)
    if values:
        new.set_weights(values)
    return new


def strip(model, shrink=False):
    """Returns a plain Keras model with masks folded in and wrappers removed.

    With ``shrink=True`` channels that are zero or constant across their
    whole dependency group (e.g. pruned with a channel/filter granularity,
    whose masks also cover the unit's bias and the BatchNorm after it) are
    then physically removed by ``tfprune.structure.remove_dead_channels``
    (constants folded into the next layer's bias where that is exact): a
    smaller model with the same predictions.

    The result has no tfprune classes, so it loads with plain Keras. The
    compile state is not copied (as with ``clone_model``).

    Example:

    >>> import keras, tfprune as tp
    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="d")])
    >>> pruned = tp.prune(model, schedule=tp.OneShot(0.5))
    >>> pruned.get_layer("d").update_masks(step=0)   # what PruningCallback does
    >>> plain = tp.strip(pruned)
    >>> type(plain.get_layer("d")).__name__, tp.sparsity(plain)["d/kernel"]
    ('Dense', 0.5)
    """
    model = _load_if_path(model)
    if isinstance(model, PruneWrapper):
        return strip_layer(model)
    if shrink:
        from tfprune.structure import remove_dead_channels
        return remove_dead_channels(strip(model))
    wrappers = find_wrappers(model)
    if not wrappers:
        return model
    if not is_graph_model(model):
        raise ValueError(
            f"Model '{model.name}' is a subclassed model; tfprune.strip cannot "
            "rebuild it. Replace each pruned layer with "
            "tfprune.strip_layer(wrapper) in your model's code.")
    never = [w.name for w in wrappers if w.step < 0]
    if never:
        warnings.warn(
            f"Layers {never} were never pruned (pruning step is -1): was the model "
            "trained with tfprune.PruningCallback?", stacklevel=2)
    pairs = []

    def clone_fn(layer):
        if isinstance(layer, PruneWrapper):
            return strip_layer(layer)
        new = _clone_layer(layer)
        pairs.append((layer, new))
        return new

    stripped = keras.models.clone_model(model, clone_function=clone_fn, recursive=True)
    _copy_weights(pairs)
    return stripped
