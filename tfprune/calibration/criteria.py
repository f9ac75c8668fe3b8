r"""The one-shot calibration criteria ``"wanda"`` and ``"sparsegpt"``.

Registered in the criteria registry (``tfprune.criteria.get("wanda")``), so
they are accepted wherever a criterion is: ``tfprune.prune(model,
schedule=tfprune.OneShot(0.5), criterion="sparsegpt")`` wraps the model and
``tfprune.oneshot(pruned, data)`` then prunes every wrapper with its
criterion, granularity and target on calibration data.

Both read statistics of the *inputs* of a layer over calibration tokens
(rows of ``X``), which ``tfprune.oneshot`` collects layer by layer on the
already-pruned model; they are stored in the wrappers, broadcast to the
kernel's shape, so a later ``update_masks`` can reuse them. ``score()``
alone can only rank weights: SparseGPT's reconstruction, which *changes the
kept weights*, cannot be written as a score, so that part runs in
``tfprune.oneshot`` (``tfprune.calibration``), the engine this criterion
stands for.
"""

import numpy as np

from tfprune import criteria

__all__ = ["Wanda", "SparseGPT"]


def _calibration_unsupported(layer):
    # Imported late: the calibration engine imports the wrappers, which import the criteria.
    from tfprune.calibration._inputs import unsupported_reason
    return unsupported_reason(layer)


def _stat(stats, key, name):
    if not stats or key not in stats:
        raise ValueError(
            f"Criterion '{name}' needs statistics of the layer's calibration inputs "
            f"({key}), which tfprune.score does not collect: prune with "
            f"tfprune.oneshot(model, data, criterion='{name}'), or wrap with "
            f"tfprune.prune(..., criterion='{name}') and call tfprune.oneshot(pruned, data).")
    return np.asarray(stats[key], np.float64)


@criteria.register("wanda")
class Wanda(criteria.Criterion):
    r"""Pruning by Weights and activations (Sun et al. 2023).

    .. math:: s_{ij} = |W_{ij}|\; \|X_{:, j}\|_2

    for output ``i`` and input ``j``, with :math:`\|X_{:, j}\|_2` the L2 norm
    of input feature ``j`` over all calibration rows (tokens, positions).
    ``tfprune.oneshot`` compares scores within each output row (the paper's
    comparison group) for unstructured sparsity, within each ``m`` inputs
    for N:M. No weight is updated. Reads ``stats["input_norm"]`` (broadcast
    to the weight's shape). Takes no arguments.

    >>> w = np.array([[1., -1.], [2., 2.]])             # Dense kernel (in=2, out=2)
    >>> Wanda().score(w, {"input_norm": np.array([[10.], [1.]]) * np.ones((2, 2))}).tolist()
    [[10.0, 10.0], [2.0, 2.0]]
    """

    needs_calibration = True

    def unsupported(self, layer):
        return _calibration_unsupported(layer)

    def score(self, weight, stats=None):
        return np.abs(np.asarray(weight, np.float64)) * _stat(stats, "input_norm", "wanda")


@criteria.register("sparsegpt")
class SparseGPT(criteria.Criterion):
    r"""SparseGPT (Frantar & Alistarh 2023): OBS pruning with weight reconstruction.

    With :math:`H = X^T X + \lambda I` over calibration rows and :math:`U`
    the upper Cholesky factor of :math:`H^{-1}`, the saliency of dropping
    :math:`W_{ij}` is

    .. math:: s_{ij} = W_{ij}^2 / U_{jj}^2

    and after each dropped column the kept weights to its right are updated
    to compensate, :math:`W_{:, j:} \mathrel{-}= \frac{w_j - q_j}{U_{jj}} U_{j, j:}`
    (see ``tfprune.calibration.sparsegpt``). ``tfprune.oneshot`` runs the
    whole algorithm; ``score`` only gives the saliency at the current
    weights (for later mask updates of a wrapped model), from
    ``stats["hinv_diag"]`` (:math:`U_{jj}`, broadcast to the weight's shape).
    Takes no arguments (``damp`` and ``block_size`` are ``tfprune.oneshot``'s).

    >>> SparseGPT().score(np.array([2., 3.]), {"hinv_diag": np.array([1., 3.])}).tolist()
    [4.0, 1.0]
    """

    needs_calibration = True
    reconstructs = True

    def unsupported(self, layer):
        return _calibration_unsupported(layer)

    def score(self, weight, stats=None):
        d = _stat(stats, "hinv_diag", "sparsegpt")
        return np.square(np.asarray(weight, np.float64)) / np.square(d)
