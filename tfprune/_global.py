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

from tfprune._statscores import weight_scores
from tfprune.granularity import keep_top, over

__all__ = ["global_masks"]


def global_masks(wrappers, sparsity, min_keep=1, consume_stats=False):
    """Masks for ``wrappers`` pruning ``sparsity`` of all their weights together.

    Group scores are compared per weight: granularities that sum scores over
    a group are divided by the group size, so a 64-weight channel is not
    favoured over a 9-weight one for its size alone.

    Memory: each weight's scores buffer (when the criterion scores into a
    fresh one) holds its group scores and then its mask; the groups of all
    weights are ranked together without concatenating them.

    Returns ``{wrapper: [mask, ...]}``.
    """
    entries = []
    for w in wrappers:
        for i, info in enumerate(w.prunable_weights):
            # scored slice by slice when elementwise: no full copy of the weight; data
            # criteria over their statistics (consume_stats: reset by apply_masks next)
            scores, owned = weight_scores(w, i, consume_stats)
            buffer = scores if owned and scores.dtype == np.float32 else None
            try:
                group_scores, expand = w.granularity.groups(
                    scores, info, **over(w.granularity.groups, buffer))
            except NotImplementedError:
                raise ValueError(
                    f"scope='global' ranks groups across layers; {w.granularity!r} (layer "
                    f"'{w.name}') has no groups. Use scope='layer' with it.") from None
            group_scores = np.asarray(group_scores)
            if not np.issubdtype(group_scores.dtype, np.floating):
                group_scores = group_scores.astype(np.float64)
            size = scores.size / group_scores.size
            ranked = group_scores
            if getattr(w.granularity, "reduce", None) == "sum":
                # divided in place when the group scores live in our buffer
                ours = buffer is not None and np.shares_memory(group_scores, buffer)
                ranked = np.divide(group_scores, size, out=group_scores if ours else None)
            del scores, group_scores
            entries.append((w, ranked, size, expand, getattr(expand, "keep_out", None)))
    # One size for all groups (unstructured, or one granularity on equal
    # groups): a scalar, so keep_top counts without sorting; else one per group.
    distinct = {e[2] for e in entries}
    sizes = [distinct.pop()] if len(distinct) == 1 else \
        np.concatenate([np.full(e[1].size, e[2]) for e in entries])
    # One joint threshold; then each weight keeps at least min_keep groups. The
    # group masks go where the granularities asked (over the scores if ours).
    keeps = keep_top([e[1] for e in entries], sparsity, min_keep=0, sizes=sizes,
                     out=[e[4] for e in entries], min_keep_each=min_keep)
    result = {}
    for (w, ranked, _, expand, _), keep in zip(entries, keeps):
        result.setdefault(w, []).append(np.asarray(expand(keep), np.float32))
    return result
