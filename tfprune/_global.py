r"""Global scope: one threshold on group scores across all layers.

Used by ``tfprune.prune(..., scope="global")``: instead of pruning every
layer to the same sparsity, the lowest-scored groups of the whole model go
first, so robust layers end up sparser than sensitive ones. Each weight keeps
at least ``min_keep`` groups (a layer is never emptied).

Every group :math:`g` of every pruned weight has a score :math:`S_g` (its
granularity's reduction of the criterion) and a size :math:`|g|` in weights.
Groups are ranked on

.. math:: r_g = \begin{cases} S_g / |g| & \text{reduce = sum} \\ S_g & \text{otherwise}\end{cases}

and, with the groups sorted by ascending :math:`r` (ties by position), the
shortest prefix :math:`P` with

.. math:: \sum_{g \in P} |g| \ \ge\ \mathrm{round}\Big(s \sum_g |g|\Big)

is pruned (:func:`tfprune.granularity.keep_top` with ``sizes``). A weight
left with fewer than ``min_keep`` groups gets its best ones back.
"""

import numpy as np

from tfprune._masks import read_scores
from tfprune.granularity import keep_top

__all__ = ["global_masks"]


def global_masks(wrappers, sparsity, min_keep=1):
    """Masks for ``wrappers`` pruning ``sparsity`` of all their weights together.

    Group scores are compared per weight: granularities that sum scores over
    a group are divided by the group size, so a 64-weight channel is not
    favoured over a 9-weight one for its size alone.

    Returns ``{wrapper: [mask, ...]}``.
    """
    entries = []
    for w in wrappers:
        for i, info in enumerate(w.prunable_weights):
            # scored slice by slice when elementwise: no full copy of the weight
            scores, _ = read_scores(info.variable, w.criterion, w.collect_stats(i))
            try:
                group_scores, expand = w.granularity.groups(scores, info)
            except NotImplementedError:
                raise ValueError(
                    f"scope='global' ranks groups across layers; {w.granularity!r} (layer "
                    f"'{w.name}') has no groups. Use scope='layer' with it.") from None
            group_scores = np.asarray(group_scores)
            if not np.issubdtype(group_scores.dtype, np.floating):
                group_scores = group_scores.astype(np.float64)
            size = scores.size / group_scores.size
            ranked = group_scores / size if getattr(w.granularity, "reduce", None) == "sum" \
                else group_scores
            entries.append((w, ranked.reshape(-1), group_scores.shape, size, expand))
    scores = np.concatenate([e[1] for e in entries])
    # One size for all groups (unstructured, or one granularity on equal
    # groups): a scalar, so keep_top counts without sorting; else one per group.
    distinct = {e[3] for e in entries}
    sizes = [distinct.pop()] if len(distinct) == 1 else \
        np.concatenate([np.full(e[1].size, e[3]) for e in entries])
    # The per-weight floor is applied below, so none here. The mask is written
    # over the concatenated scores (ours) when they are float32.
    keep = keep_top(scores, sparsity, min_keep=0, sizes=sizes,
                    out=scores if scores.dtype == np.float32 else None)
    result, offset = {}, 0
    for w, ranked, shape, _, expand in entries:
        part = keep[offset:offset + ranked.size]
        offset += ranked.size
        if part.sum() < min_keep:  # the floor: restore this weight's best groups
            part = np.maximum(part, keep_top(ranked, 1.0, min_keep=min_keep))
        result.setdefault(w, []).append(np.asarray(expand(part.reshape(shape)), np.float32))
    return result
