r"""The per-layer solvers of :func:`tfprune.oneshot`, on the ``(out, in)`` matrix view.

Every function here works on one kernel ``W`` of shape ``(out, in)`` (TFLite's
view, ``tfprune.granularity.to_matrix``) and the Gram matrix of its
calibration inputs ``H = X^T X`` (``in x in``, rows of ``X`` are tokens /
positions). NumPy only, float64.

* :func:`keep_rows` / :func:`keep_n_of_m` / :func:`keep_layer`: which weights
  a score keeps (comparison group: one output row, ``m`` consecutive inputs,
  the whole layer);
* :func:`sparsegpt`: SparseGPT's OBS reconstruction (Frantar & Alistarh 2023);
* :func:`relative_error`: :math:`\|WX - W'X\|_F^2 / \|WX\|_F^2` from ``H``.
"""

import numpy as np

from tfprune.granularity import keep_top

__all__ = ["drop_count", "keep_rows", "keep_n_of_m", "keep_layer", "inverse_cholesky",
           "prepared_hessian", "sparsegpt", "solve", "relative_error", "NotPositiveDefinite"]


class NotPositiveDefinite(ValueError):
    """The dampened Hessian has no Cholesky factor."""


def drop_count(sparsity, n):
    """Weights dropped out of ``n``: ``round(s n)``, keeping at least one.

    >>> drop_count(0.5, 7), drop_count(0.99, 4)
    (4, 3)
    """
    return max(0, min(int(round(float(sparsity) * n)), n - 1))


def _nm_drop(sparsity, n, m):
    # The rule of tfprune.NofM: the pattern never drops more than m - n.
    return min(m - n, int(round(float(sparsity) * m)))


def keep_rows(scores, sparsity):
    """Keep mask pruning the ``round(s * in)`` lowest scores of every row (Wanda's group).

    Ties are dropped in column order, as ``tfprune.granularity.keep_top`` does.

    >>> keep_rows(np.array([[3., 1., 2., 4.], [1., 2., 3., 4.]]), 0.5).tolist()
    [[1.0, 0.0, 0.0, 1.0], [0.0, 0.0, 1.0, 1.0]]
    """
    scores = np.asarray(scores, np.float64)
    k = drop_count(sparsity, scores.shape[1])
    keep = np.ones(scores.shape, np.float32)
    if k:
        order = np.argsort(np.where(np.isnan(scores), np.inf, scores), axis=1, kind="stable")
        np.put_along_axis(keep, order[:, :k], 0.0, axis=1)
    return keep


def keep_n_of_m(scores, sparsity, n, m):
    """Keep mask of N:M sparsity: in each row, every ``m`` consecutive columns keep ``n``.

    >>> keep_n_of_m(np.array([[4., 1., 3., 2.]]), 0.5, 2, 4).tolist()
    [[1.0, 0.0, 1.0, 0.0]]
    """
    scores = np.asarray(scores, np.float64)
    rows, cols = scores.shape
    groups = scores.reshape(rows, cols // m, m)
    keep = np.ones(groups.shape, np.float32)
    drop = _nm_drop(sparsity, n, m)
    if drop:
        order = np.argsort(groups, axis=2, kind="stable")
        np.put_along_axis(keep, order[:, :, :drop], 0.0, axis=2)
    return keep.reshape(rows, cols)


def keep_layer(scores, sparsity):
    """Keep mask pruning the ``round(s * size)`` lowest scores of the whole matrix."""
    return keep_top(scores, sparsity)


def inverse_cholesky(H, damp):
    """Upper triangular ``U`` with ``U^T U = (H + lambda I)^{-1}``, ``lambda = damp * mean(diag H)``.

    One Cholesky factorisation and one triangular inverse: with ``P`` the
    reversal permutation, ``P H P = L L^T`` gives ``H = R R^T`` with
    ``R = P L P`` upper triangular, so ``H^{-1} = R^{-T} R^{-1}`` and
    ``U = R^{-1}``, the factor SparseGPT takes (the reference code gets it with
    a Cholesky, an inverse and a second Cholesky).

    >>> H = np.array([[4., 2.], [2., 3.]])
    >>> U = inverse_cholesky(H, 0.0)
    >>> bool(np.allclose(U.T @ U, np.linalg.inv(H))), bool(np.allclose(U, np.triu(U)))
    (True, True)
    >>> inverse_cholesky(np.ones((2, 2)), 0.0)        # singular
    Traceback (most recent call last):
    ...
    tfprune.calibration._solvers.NotPositiveDefinite: 0.0
    """
    H = H + damp * float(np.mean(np.diag(H))) * np.eye(len(H))
    try:
        L = np.linalg.cholesky(H[::-1, ::-1])
    except np.linalg.LinAlgError:
        raise NotPositiveDefinite(damp) from None
    R = L[::-1, ::-1]
    # A pivot lost to rounding (a singular H factorised anyway): R^{-1} would be noise.
    if np.any(np.diag(R) ** 2 <= 1e-10 * np.diag(H)):
        raise NotPositiveDefinite(damp)
    return np.triu(np.linalg.inv(R))


def prepared_hessian(H):
    """``(H, alive)``: ``H`` with ``H_jj = 1`` for dead inputs, and which inputs live.

    An input ``j`` that is 0 in every calibration row contributes nothing to
    ``WX``: its row and column of ``H`` are 0, so ``H_jj = 1`` makes ``H``
    invertible without coupling ``j`` to other inputs (the reference code
    does the same), and its weights score 0 so they are dropped first. They
    are not zeroed unless dropped: at sparsity 0 every weight is kept.
    """
    H = np.array(H, np.float64)
    alive = np.diag(H) != 0
    H[~alive, ~alive] = 1.0
    return H, alive


def sparsegpt(W, H, sparsity, *, nm=None, damp=0.01, block_size=128):
    r"""SparseGPT: prune ``W`` (out, in) and update the kept weights to rebuild ``WX``.

    With :math:`H = X^T X + \lambda I`, :math:`\lambda = \mathrm{damp}\cdot
    \overline{\mathrm{diag}(H)}`, and :math:`U` the upper Cholesky factor of
    :math:`H^{-1}` (:math:`H^{-1} = U^T U`), columns are processed left to
    right in blocks of ``block_size``. In each block the weights to drop
    are the lowest of the OBS saliency :math:`w_{ij}^2 / U_{jj}^2` (over the
    whole block for unstructured sparsity, over each ``m`` columns for
    N:M, chosen when the group's first column is reached); column :math:`j`
    is then quantised to its mask, :math:`q_j = w_j \odot \mathrm{keep}_j`,
    and the error spread over the columns to its right:

    .. math::

        e_j = (w_j - q_j) / U_{jj}, \qquad
        W_{:, j:} \mathrel{-}= e_j\, U_{j, j:}

    inside the block, then lazily for the later blocks,
    :math:`W_{:, i_2:} \mathrel{-}= E\, U_{i_1:i_2,\, i_2:}`.

    Args:
        W: the kernel as an ``(out, in)`` matrix.
        H: ``X^T X`` (``in x in``) of the calibration inputs.
        sparsity: fraction of weights to drop.
        nm: ``(n, m)`` to keep ``n`` of every ``m`` inputs, or ``None``.
        damp: :math:`\lambda` relative to the mean of ``diag(H)``.
        block_size: columns per lazy-update block (a multiple of ``m``).

    Returns:
        ``(W', keep)``: the updated weights (0 where dropped) and the keep mask.
        (``solve`` returns ``diag(U)`` as well.)

    Raises:
        NotPositiveDefinite: if the dampened ``H`` has no Cholesky factor.

    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(256, 8)); W = rng.normal(size=(3, 8))
    >>> W2, keep = sparsegpt(W, X.T @ X, 0.5, block_size=4)
    >>> int((W2 == 0).sum()), bool((W2[keep == 1] != W[keep == 1]).any())
    (12, True)
    """
    return solve(W, H, sparsity, nm=nm, damp=damp, block_size=block_size)[:2]


def solve(W, H, sparsity, *, nm=None, damp=0.01, block_size=128):
    """:func:`sparsegpt`, returning ``(W', keep, diag(U))``."""
    W = np.array(W, np.float64)
    H, alive = prepared_hessian(H)
    U = inverse_cholesky(H, damp)
    rows, cols = W.shape
    keep = np.ones(W.shape, np.float32)
    total = rows * cols
    dropped_before = 0
    for i1 in range(0, cols, block_size):
        i2 = min(i1 + block_size, cols)
        W1 = W[:, i1:i2].copy()
        E1 = np.zeros_like(W1)
        U1 = U[i1:i2, i1:i2]
        d1 = np.diag(U1)
        a1 = alive[i1:i2][None, :]
        keep1 = np.ones(W1.shape, np.float32)
        if nm is None:
            # Exact overall count: this block drops its share of round(s * total).
            target = min(int(round(float(sparsity) * rows * i2)), total - 1)
            k = max(0, target - dropped_before)
            if k:
                saliency = (a1 * W1 ** 2 / d1[None, :] ** 2).reshape(-1)
                order = np.argsort(saliency, kind="stable")[:k]
                keep1.reshape(-1)[order] = 0.0
            dropped_before += k
        for i in range(i2 - i1):
            if nm is not None and i % nm[1] == 0:
                g = slice(i, i + nm[1])
                keep1[:, g] = keep_n_of_m(a1[:, g] * W1[:, g] ** 2 / d1[None, g] ** 2,
                                           sparsity, *nm)
            w = W1[:, i]
            q = w * keep1[:, i]
            err = (w - q) / d1[i]
            W1[:, i:] -= np.outer(err, U1[i, i:])
            W1[:, i] = q
            E1[:, i] = err
        W[:, i1:i2] = W1
        keep[:, i1:i2] = keep1
        W[:, i2:] -= E1 @ U[i1:i2, i2:]
    return W * keep, keep, np.diag(U).copy()


def relative_error(W, W_new, H):
    r"""``||WX - W'X||^2 / ||WX||^2`` computed from ``H = X^T X`` alone.

    .. math:: \frac{\mathrm{tr}(D H D^T)}{\mathrm{tr}(W H W^T)}, \quad D = W - W'

    >>> X = np.eye(2); relative_error(np.array([[1., 1.]]), np.array([[1., 0.]]), X.T @ X)
    0.5
    """
    W = np.asarray(W, np.float64)
    D = W - np.asarray(W_new, np.float64)
    num = float(((D @ H) * D).sum())
    den = float(((W @ H) * W).sum())
    return num / den if den > 0 else float(num > 0)
