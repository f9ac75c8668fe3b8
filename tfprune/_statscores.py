"""Masks of data criteria scored over their statistics' own buffers (issue 21).

A data criterion's old path read its float32 accumulator as a float64 copy
(and the weight as another), then scored into a new float64 array: 5x to 7x
the weights beside the pruned copy and the masks. Criteria with an
``in_place_stat`` are scored here instead, slice by slice, into a float32
buffer holding that statistic:

* gradient statistics (taylor, snip, fisher: reset after each mask update
  anyway) are scored over the accumulator variable's own buffer when the
  caller consumes them (``consume``: the update resets them right after), so
  the scores and then the mask need no memory at all; otherwise (movement's
  running sum, which is state, or no writable buffer: JAX) over one fresh
  float32 copy;
* activation statistics (one value per output unit) are scored per unit and
  broadcast into one fresh float32 buffer.

Each slice is computed in float64 exactly as ``criterion.score`` computes it
and then stored in float32, so the masks are those of the float64 path
unless two scores differ only below float32's precision (relative 2**-24)
at the pruning threshold: they then tie, and ties go by index.
"""

import keras
import numpy as np

from tfprune import accumulate
from tfprune._grouping import writes_over
from tfprune._inbuffer import broadcast_expand
from tfprune._jaxbuffers import free, multiply
from tfprune._masks import SLICE, assign_mask, read_scores, writable_view

__all__ = ["stat_scores", "weight_scores", "compute", "apply"]


def _in_place_key(criterion):
    """The criterion's ``in_place_stat``, or None if its ``score`` is not the one it mirrors."""
    key = getattr(criterion, "in_place_stat", None)
    owner = next((c for c in type(criterion).__mro__ if "score_in_place" in vars(c)), None)
    if key is None or owner is None or type(criterion).score is not owner.score:
        return None   # a subclass scoring otherwise than its parent's score_in_place
    return key


def stat_scores(wrapper, index, consume=False):
    """Float32 scores of prunable weight ``index`` from the in-fit statistics, or None.

    None when the criterion has no in-place scoring or no statistics were
    accumulated (the caller then takes the float64 path, e.g. on statistics
    from ``tfprune.score``). ``consume``: the statistic's buffer may be
    overwritten (only if the criterion resets its statistics after updates).
    """
    crit = wrapper.criterion
    key = _in_place_key(crit)
    state = getattr(wrapper, "_accumulators", None)
    if key is None or state is None:
        return None
    batches = float(keras.ops.convert_to_numpy(state.batches))
    if batches == 0:
        return None
    info = wrapper.prunable_weights[index]
    if key in state.grads[index]:
        variable = state.grads[index][key]
        spent = consume and accumulate.resets(crit)   # zeroed after this update anyway
        buf = writable_view(variable) if spent else None
        if buf is None:   # a fresh float32 copy (one, not two: np.asarray of the variable)
            if spent:
                # JAX (immutable arrays): this weight's old mask, replaced by this
                # update, goes before the copy is made, and the statistic right after,
                # so the copy takes their room (3x the weights, not 4x).
                free(wrapper.masks[index])
            buf = np.asarray(variable, np.float32)
            if not (buf.flags.writeable and buf.flags.c_contiguous):
                buf = np.array(buf, np.float32, order="C")
            if spent:
                free(variable)
        flat = buf.reshape(-1)
        weight = keras.ops.reshape(info.variable, (-1,)) if crit.in_place_weight else None
        for a in range(0, flat.size, SLICE):
            part = None if weight is None else keras.ops.convert_to_numpy(weight[a:a + SLICE])
            crit.score_in_place(flat[a:a + SLICE], part, batches)
        return buf
    unit = accumulate.unit_stats(state).get(key)
    shape = tuple(info.shape)
    axes = [int(a) % len(shape) for a in info.out_axes]
    if unit is None or axes != sorted(axes):
        return None
    if unit.size != int(np.prod([shape[a] for a in axes])):
        accumulate.broadcast_units(unit, info)   # raises the usual error
    crit.score_in_place(unit, None, batches)
    return broadcast_expand(unit, shape, axes, out=np.empty(shape, np.float32))


def weight_scores(wrapper, index, consume=False):
    """``(scores, owned)`` of prunable weight ``index`` (see ``tfprune._masks.read_scores``)."""
    scores = stat_scores(wrapper, index, consume)
    if scores is not None:
        return scores, True
    info = wrapper.prunable_weights[index]
    return read_scores(info.variable, wrapper.criterion, wrapper.collect_stats(index))


def compute(wrapper, sparsity, consume=False):
    """``PruneWrapper.compute_masks``: the masks, written over the scores when owned."""
    out = []
    for i, info in enumerate(wrapper.prunable_weights):
        scores, owned = weight_scores(wrapper, i, consume)
        if owned and writes_over(wrapper.granularity):
            # Large weights: the mask is written over the scores (no second buffer).
            mask = wrapper.granularity.mask(scores, sparsity, info, out=scores)
        else:
            mask = wrapper.granularity.mask(scores, sparsity, info)
        del scores
        out.append(np.asarray(mask, np.float32))
    return out


def apply(wrapper, masks):
    """Assigns ``masks`` to the mask variables, frees them, then zeroes what they prune.

    Each NumPy mask (often the scores' buffer, or a statistic's) is dropped,
    from ``masks`` too if a list, once assigned; the weights are zeroed
    afterwards from the mask variables (one weight-sized temporary each).
    Not in place: a pruned clone shares its weights' buffers with the model
    it was cloned from until their first write (so no NumPy view), and
    row-wise strided writes would leave the weights in TensorFlow's
    copy-on-read mode (every training step would copy them).
    """
    if not isinstance(masks, list):
        masks = list(masks)
    views = _stat_buffers(wrapper)
    for k, (mask_var, m) in enumerate(zip(wrapper.masks, masks)):
        # A mask written over a statistic's own buffer is assigned whole (see assign_mask).
        assign_mask(mask_var, m, by_rows=_address(m) not in views)
        masks[k] = m = None
    masks[:] = []
    for info, mask_var in zip(wrapper.prunable_weights, wrapper.masks):
        multiply(info.variable, mask_var)   # JAX: over the weight's own buffer


def _address(array):
    return np.asarray(array).__array_interface__["data"][0]


def _stat_buffers(wrapper):
    """Addresses of the buffers of ``wrapper``'s gradient statistics (those ``writable_view`` gives)."""
    state = getattr(wrapper, "_accumulators", None)
    out = set()
    for per_weight in (state.grads if state is not None else []):
        for variable in per_weight.values():
            view = writable_view(variable)
            if view is not None:
                out.add(_address(view))
    return out

