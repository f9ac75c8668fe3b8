"""TFMOT's mask rules, in NumPy: magnitude, block-pooled magnitude and m-by-n.

They reproduce ``tfmot.sparsity.keras``'s ``pruning_impl`` exactly (same
rounding, same ties, same padding), so a model pruned through the shim has
the masks TFMOT would give it.
"""

import numpy as np

__all__ = ["magnitude_mask", "block_mask", "m_by_n_mask", "m_by_n_supported",
           "is_pruned_m_by_n"]


def magnitude_mask(weights, sparsity):
    """``(threshold, mask)``: keep the ``max(round(n * (1 - s)), 1)`` largest |w|.

    Like TFMOT, every weight at least as large as the threshold (the k-th
    largest magnitude) is kept, so ties may keep a few more.

    >>> t, m = magnitude_mask(np.arange(1.0, 11.0), 0.200000018)
    >>> float(t), m.tolist()
    (3.0, [0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0])
    """
    abs_w = np.abs(np.asarray(weights))
    flat = abs_w.reshape(-1)
    keep = np.float32(flat.size) * (np.float32(1.0) - np.float32(sparsity))
    k = int(max(np.round(keep), 1))
    order = np.argsort(-flat, kind="stable")
    threshold = flat[order[k - 1]]
    mask = (flat >= threshold)
    mask[order[k - 1]] = True
    return threshold.astype(abs_w.dtype), mask.reshape(abs_w.shape).astype(np.float32)


def _windows(size, b):
    # tf.nn.pool's SAME padding puts pad_total // 2 before the first window.
    count = -(-size // b)
    before = max(count * b - size, 0) // 2
    return [(max(i * b - before, 0), min(i * b - before + b, size)) for i in range(count)]


def _pool(matrix, block, pooling):
    """TFMOT's factorized SAME pooling: windows pool only the weights they cover."""
    reduce = np.max if pooling == "MAX" else np.mean
    rows, cols = _windows(matrix.shape[0], block[0]), _windows(matrix.shape[1], block[1])
    out = np.zeros((len(rows), len(cols)), matrix.dtype)
    for i, (r0, r1) in enumerate(rows):
        for j, (c0, c1) in enumerate(cols):
            out[i, j] = reduce(matrix[r0:r1, c0:c1])
    return out


def block_mask(weights, sparsity, block_size, pooling):
    """``(threshold, mask)`` over ``block_size`` blocks pooled by AVG or MAX.

    >>> w = np.array([[.1, .1, .2, .2], [.1, .1, .2, .2],
    ...               [.3, .3, .4, .4], [.3, .3, .4, .4]])
    >>> block_mask(w, 0.5, (2, 2), "AVG")[1][:, 0].tolist()
    [0.0, 0.0, 1.0, 1.0]
    """
    weights = np.asarray(weights)
    squeezed = np.squeeze(weights)
    if squeezed.ndim != 2:
        raise ValueError("Block Sparsity can only be used for layers which "
                         "have 2-dimensional weights.")
    block = [int(b) for b in block_size]
    pooled = _pool(np.abs(squeezed), block, pooling)
    threshold, small = magnitude_mask(pooled, sparsity)
    full = np.kron(small, np.ones(block, np.float32))
    mask = full[:squeezed.shape[0], :squeezed.shape[1]]
    return threshold, mask.reshape(weights.shape).astype(np.float32)


def m_by_n_supported(shape):
    """TFMOT's m-by-n applies to rank-2 (Dense) and rank-4 (Conv2D) kernels."""
    return len(shape) in (2, 4)


def _to_rows(weights):
    # TFLite order: Dense (in, out) -> (out, in); Conv2D (h, w, in, out) -> (out*h*w, in).
    if weights.ndim == 2:
        return weights.T
    if weights.ndim == 4:
        return np.transpose(weights, (3, 0, 1, 2)).reshape(-1, weights.shape[2])
    raise ValueError(f"weight tensor with shape: {weights.shape} is not supported.")


def _from_rows(rows, shape):
    if len(shape) == 2:
        return rows.T
    return np.transpose(rows.reshape(shape[3], shape[0], shape[1], shape[2]), (1, 2, 3, 0))


def m_by_n_mask(weights, m_by_n):
    """TFMOT's ``sparsity_m_by_n=(m, n)``: ``m`` zeros in every ``n`` consecutive inputs.

    Inputs are the last axis of TFLite's layout. When the input count is not
    a multiple of ``n`` the last group is zero-padded first, so 7 inputs with
    (2, 4) keep 2 + 2 of 7 (3/7 sparsity).

    >>> w = np.array([[0.74, 0.68], [-0.89, -0.45], [-1.68, 1.24], [0.31, -0.6]])
    >>> m_by_n_mask(w, (2, 4)).tolist()
    [[0.0, 1.0], [1.0, 0.0], [1.0, 1.0], [0.0, 0.0]]
    """
    m, n = (int(v) for v in m_by_n)
    if not m < n:
        raise ValueError(f"Argument m_by_n received {tuple(m_by_n)}, m be must "
                         "smaller than n.")
    weights = np.asarray(weights)
    rows = np.abs(_to_rows(weights))
    pad = n - rows.shape[-1] % n
    padded = np.pad(rows, [(0, 0), (0, pad)])
    blocks = padded.reshape(-1, n)
    keep = n - m
    # top_k keeps the largest; among equal values the lower index wins.
    order = np.argsort(-blocks, axis=-1, kind="stable")[:, :keep]
    mask = np.zeros_like(blocks, dtype=np.float32)
    np.put_along_axis(mask, order, 1.0, axis=-1)
    mask = mask.reshape(padded.shape)[:, :rows.shape[-1]]
    return _from_rows(mask, weights.shape).astype(np.float32)


def is_pruned_m_by_n(weights, m_by_n=(2, 4)):
    """True if every ``n`` consecutive inputs hold at least ``m`` zeros (TFMOT's check)."""
    m, n = m_by_n
    rows = _to_rows(np.asarray(weights))
    for row in rows:
        for col in range(0, rows.shape[1], n):
            if np.count_nonzero(row[col:col + n]) > n - m:
                return False
    return True
