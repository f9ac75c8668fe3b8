"""One reader for the data tfprune runs a model on.

``tfprune.score``, ``tfprune.sensitivity.sweep`` / ``estimate``,
``tfprune.structure.prune_channels`` and
``tfprune.export.to_tflite(representative_data=...)`` all take data through
this module, in one of these forms:

* ``(x, y)``: arrays (or nested structures of arrays, one per model input)
  with the same number of samples;
* ``x`` alone, where no labels are needed;
* a ``tf.data.Dataset`` of batches ``(x, y)`` (or ``x``);
* an iterator, e.g. a generator, of such batches, where the data is read
  once.

The same forms work on every Keras backend: arrays are cut into NumPy
batches (``tf.data`` on TensorFlow, as before), and on JAX or torch a
dataset's batches are handed over as NumPy arrays. A batch holding a value
with no dense array form (``tf.SparseTensor``, ``tf.RaggedTensor``) on a
backend other than TensorFlow is refused with the owner's name.

A two-item tuple or list is always ``(x, y)``. Every error names the
calling function (``owner``) and the argument, says what was given and
what is allowed.

>>> import numpy as np
>>> src = check((np.zeros((5, 2)), np.arange(5)), "demo")
>>> src.kind, src.size
('arrays', 5)
>>> [tuple(b[0].shape) for b in as_batches(src, 2, "demo")]
[(2, 2), (2, 2), (1, 2)]
>>> def gen():
...     yield np.ones((3, 2)), np.zeros(3)
>>> [tuple(b[0].shape) for b in as_batches(gen(), 32, "demo")]
[(3, 2)]
"""

import collections.abc
import dataclasses
import itertools
import sys

import keras
import numpy as np

__all__ = ["Source", "check", "as_batches", "inputs", "count", "has_labels", "is_dataset",
           "input_arrays"]


def is_dataset(data):
    """True for a ``tf.data.Dataset`` (False without TensorFlow loaded: none can exist)."""
    tf = sys.modules.get("tensorflow")
    data_module = getattr(tf, "data", None)
    return data_module is not None and isinstance(data, data_module.Dataset)


def _is_iterator(data):
    return isinstance(data, collections.abc.Iterator) and not is_dataset(data)


def _is_pair(data):
    return isinstance(data, (tuple, list)) and len(data) == 2


def has_labels(data):
    """True if ``data`` can carry labels: ``(x, y)`` with ``y`` given, a dataset or an iterator."""
    return is_dataset(data) or _is_iterator(data) or (_is_pair(data) and data[1] is not None)


def inputs(data):
    """``x`` of in-memory ``x`` or ``(x, y)``.

    >>> inputs(([1, 2], [0, 1])), inputs([[1], [2], [3]])
    ([1, 2], [[1], [2], [3]])
    """
    return data[0] if _is_pair(data) else data


def _lengths(tree):
    return sorted({len(v) for v in keras.tree.flatten(tree)})


def count(data):
    """Number of samples of in-memory ``x`` or ``(x, y)``; ``None`` for a dataset or iterator.

    >>> count((np.zeros((4, 3)), np.zeros(4))), count(np.zeros((7, 2)))
    (4, 7)
    """
    if is_dataset(data) or _is_iterator(data):
        return None
    return _lengths(inputs(data))[0]


@dataclasses.dataclass
class Source:
    """Checked data: ``kind`` is ``"arrays"`` (``x``, ``y``, ``size`` samples),
    ``"dataset"`` or ``"iterator"`` (``batches``: the dataset or iterator).

    >>> src = check(np.zeros((3, 2)), "demo", labels=False)
    >>> src.kind, src.size, src.y
    ('arrays', 3, None)
    """

    kind: str
    x: object = None
    y: object = None
    size: int = None
    batches: object = None
    labels: bool = True
    owner: str = ""
    name: str = "data"


def _allowed(labels, reread):
    batch = "(x, y) batches" if labels else "batches"
    forms = ["(x, y) arrays" if labels else "x or (x, y) arrays", f"a tf.data.Dataset of {batch}"]
    if not reread:
        forms.append(f"an iterator of {batch}")
    return ", ".join(forms[:-1]) + " or " + forms[-1]


def check(data, owner, *, labels=True, reread=False, finite=True, name="data"):
    """Validates ``data`` before any work and returns a :class:`Source`.

    Args:
        data: any form of the module docstring.
        owner: the public function, named in every error.
        labels: the caller needs ``y`` (``x`` alone is refused).
        reread: the caller reads the data more than once (iterators refused,
            an empty dataset detected up front).
        finite: the caller reads the data to its end (infinite datasets refused).
        name: the argument's name in errors.
    """
    if is_dataset(data):
        import tensorflow as tf

        card = int(data.cardinality())
        if card == 0 or (reread and card < 0 and card != tf.data.INFINITE_CARDINALITY
                         and next(iter(data.take(1)), None) is None):
            raise ValueError(f"{owner}: the dataset `{name}` is empty.")
        if finite and card == tf.data.INFINITE_CARDINALITY:
            raise ValueError(f"{owner}: the dataset `{name}` is infinite; .take(n) batches "
                             "first.")
        return Source("dataset", batches=data, labels=labels, owner=owner, name=name)
    if _is_iterator(data):
        if reread:
            raise TypeError(f"{owner}: `{name}` is an iterator ({type(data).__name__}), "
                            f"which can be read only once, but {owner} reads it several "
                            f"times; pass {_allowed(labels, True)}.")
        return Source("iterator", batches=data, labels=labels, owner=owner, name=name)
    if labels and not _is_pair(data):
        raise TypeError(f"{owner}: `{name}` must be {_allowed(labels, reread)}; "
                        f"got {type(data).__name__}.")
    x = inputs(data)
    y = data[1] if labels else None
    try:
        nx = _lengths(x)
        ny = _lengths(y) if labels else []
    except TypeError:
        raise TypeError(f"{owner}: `{name}` must be {_allowed(labels, reread)}; got "
                        f"{type(data).__name__} holding a value without a length.") from None
    if len(nx) != 1:
        raise ValueError(f"{owner}: the inputs of `{name}` have different numbers of "
                         f"samples {nx}.")
    if len(ny) > 1:
        raise ValueError(f"{owner}: the labels of `{name}` have different numbers of "
                         f"samples {ny}.")
    if labels and ny != nx:
        raise ValueError(f"{owner}: x and y of `{name}` have different numbers of samples: "
                         f"x has {nx[0]} samples but y has {ny[0]}.")
    if nx[0] == 0:
        raise ValueError(f"{owner}: `{name}` is empty (0 samples).")
    return Source("arrays", x=x, y=y, size=nx[0], labels=labels, owner=owner, name=name)


def as_batches(data, batch_size, owner, *, labels=True, limit=None):
    """Iterates over ``data`` (anything :func:`check` takes, or its :class:`Source`) in batches.

    Each batch is a tuple whose first item is ``x`` (then ``y``, when
    ``labels``). Arrays are cut into ``batch_size`` batches; a dataset or
    iterator gives its own batches. ``limit`` caps the number of batches.
    Raises if no batch at all comes out.
    """
    src = data if isinstance(data, Source) else check(
        data, owner, labels=labels, finite=limit is None)
    tf_backend = keras.backend.backend() == "tensorflow"
    if src.kind == "arrays":
        items = (src.x, src.y) if src.labels else (src.x,)
        if tf_backend:
            import tensorflow as tf

            batches = tf.data.Dataset.from_tensor_slices(items).batch(batch_size)
        else:
            items = keras.tree.map_structure(np.asarray, items)
            batches = (keras.tree.map_structure(lambda a, i=i: a[i:i + batch_size], items)
                       for i in range(0, src.size, int(batch_size)))
    else:
        batches = src.batches
    if limit is not None:
        limit = int(limit)
        batches = batches.take(limit) if is_dataset(batches) else itertools.islice(batches, limit)
    return _each(batches, src, numpy=not tf_backend and src.kind != "arrays")


def _dense(value, src):
    """A TensorFlow value of a batch as NumPy (other values as they are)."""
    if not type(value).__module__.startswith("tensorflow"):
        return value
    if hasattr(value, "indices") or hasattr(value, "row_splits"):
        raise TypeError(
            f"{src.owner}: the batches of `{src.name}` hold a {type(value).__name__}, which "
            f"the Keras backend {keras.backend.backend()!r} cannot take; give dense arrays "
            "(e.g. map tf.sparse.to_dense / .to_tensor() over the dataset) or run with "
            "KERAS_BACKEND=tensorflow.")
    return value.numpy()


def _each(batches, src, numpy=False):
    n = 0
    for batch in batches:
        if not isinstance(batch, (tuple, list)):
            batch = (batch,)
        if numpy:   # tf.data hands out TensorFlow tensors: JAX and torch take NumPy
            batch = tuple(keras.tree.map_structure(lambda v: _dense(v, src), b) for b in batch)
        if src.labels and len(batch) < 2:
            raise TypeError(f"{src.owner}: the batches of `{src.name}` must be (x, y) pairs; "
                            f"got one item per batch.")
        n += 1
        yield batch
    if n == 0:
        raise ValueError(f"{src.owner}: `{src.name}` yielded no batch.")


def input_arrays(data, owner, *, name="data", limit=None):
    """In-memory inputs as a list of NumPy arrays, one per model input.

    ``data`` is an array, a list or tuple of arrays (one per input), or a
    dataset or iterator of such batches (concatenated, reading at most
    ``limit`` samples). Not ``(x, y)``: every item is an input.

    >>> [a.shape for a in input_arrays(iter([np.ones((2, 3)), np.ones((2, 3))]), "demo")]
    [(4, 3)]
    """
    if not (is_dataset(data) or _is_iterator(data)):
        items = list(data) if isinstance(data, (list, tuple)) else [data]
        return [np.asarray(a) for a in items]
    parts, seen = [], 0
    for batch in data:
        batch = list(batch) if isinstance(batch, (list, tuple)) else [batch]
        batch = [np.asarray(a) for a in batch]
        if parts and len(batch) != len(parts[0]):
            raise ValueError(f"{owner}: the batches of `{name}` hold {len(parts[0])} and then "
                             f"{len(batch)} arrays; give one array per model input.")
        parts.append(batch)
        seen += len(batch[0])
        if limit is not None and seen >= limit:
            break
    if not parts:
        raise ValueError(f"{owner}: `{name}` yielded no batch.")
    out = [np.concatenate(arrays) for arrays in zip(*parts)]
    return out if limit is None else [a[:limit] for a in out]
