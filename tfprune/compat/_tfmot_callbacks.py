"""TFMOT's ``UpdatePruningStep`` and ``PruningSummaries`` on tfprune's callbacks.

Step counting is TFMOT's: every wrapper's ``pruning_step`` starts at -1,
``on_train_begin`` sets it to 0 (only if it is still -1, so a restored model
continues), and each training step adds 1 *before* its masks are updated, so
the first update is at step 1 and after 3 one-batch epochs the step is 3.
Both callbacks also work in a custom training loop driven the TFMOT way
(``set_model``, ``on_train_begin()``, ``on_train_batch_begin(batch=-1)``,
``on_epoch_end(batch=-1)``).
"""

import os
import warnings

import keras
import numpy as np

from tfprune import api
from tfprune.callbacks import PruningCallback, scalar_metadata
from tfprune.compat._tfmot_wrapper import PruneLowMagnitude

__all__ = ["UpdatePruningStep", "PruningSummaries"]


class UpdatePruningStep(PruningCallback):
    """``tfmot.sparsity.keras.UpdatePruningStep``: required when training a pruned model.

    Advances the pruning step once per training batch and updates masks when
    the schedule says so (tfprune's :class:`PruningCallback`, counting steps
    as TFMOT does). A model without pruned layers is accepted and left alone.
    """

    def __init__(self):
        super().__init__()
        self.prunable_layers = []
        self._late = []

    def set_model(self, model):
        keras.callbacks.Callback.set_model(self, model)
        self._wrappers = None
        self._step = None

    def _collect(self):
        if self._wrappers is None:
            self._wrappers = api.find_wrappers(self.model) if self.model is not None else []
            for w in self._wrappers:
                w._driven = True
            self.prunable_layers = list(self._wrappers)
        return self._wrappers

    def on_train_begin(self, logs=None):
        self._wrappers = None
        if not self._collect():
            return
        # TFMOT: a new model starts at step 0; a restored one keeps its step.
        first = self._wrappers[0]
        if first.built and first.step == -1:
            for w in self._wrappers:
                if w.built:
                    w.pruning_step.assign(0)
        self._step = None
        if all(w.built for w in self._wrappers):
            super().on_train_begin(logs)

    def on_train_batch_begin(self, batch, logs=None):
        wrappers = self._collect()
        if not wrappers:
            return
        unbuilt = [w for w in wrappers if not w.built]
        if not unbuilt:
            return super().on_train_batch_begin(batch, logs)
        # A model that builds in its first train step (an unbuilt Sequential):
        # its wrappers are created at this batch's step, and the masks due now
        # are applied right after this batch (its weights only exist then).
        k = int(getattr(self.model, "steps_per_execution", 1) or 1)
        built = [w for w in wrappers if w.built]
        if built:
            self._wrappers = built
            try:
                super().on_train_batch_begin(batch, logs)
            finally:
                self._wrappers = wrappers
            last = self._step
        else:
            last = k  # a new model: step 0 after on_train_begin, + k
        for w in unbuilt:
            due = [s for s in range(last - k + 1, last + 1) if w.schedule.should_update(s)]
            w._start_step = last
            if due:
                self._late.append((w, due[-1], last))

    def on_train_batch_end(self, batch, logs=None):
        late, self._late = self._late, []
        for w, due, last in late:
            if w.built:
                w.update_masks(step=due)
                w.pruning_step.assign(last)

    def on_epoch_end(self, batch, logs=None):
        # TFMOT re-masks the weights at the end of every epoch.
        for w in self._collect():
            if isinstance(w, PruneLowMagnitude) and w.built:
                w.remask()

    def on_train_end(self, logs=None):
        super().on_train_end(logs)


_TENSORBOARD_ARGS = ("histogram_freq", "write_graph", "write_images",
                     "write_steps_per_second", "profile_batch", "embeddings_freq",
                     "embeddings_metadata", "embeddings_layer_names",
                     "embeddings_data")


class PruningSummaries(keras.callbacks.Callback):
    """``tfmot.sparsity.keras.PruningSummaries``: sparsity and thresholds in TensorBoard.

    Like TFMOT, at the beginning of every epoch it writes, into
    ``<log_dir>/metrics``, ``<mask>/sparsity`` and ``<threshold>/threshold``
    for every pruned weight, at step ``model.optimizer.iterations``. It does
    not write TensorBoard's loss and metric curves (TFMOT's class extends
    ``keras.callbacks.TensorBoard``): add that callback for them; its own
    arguments are accepted here and ignored, with a warning.
    """

    def __init__(self, log_dir, update_freq="epoch", **kwargs):
        if not isinstance(log_dir, str) or not log_dir:
            raise ValueError("`log_dir` must be a non-empty string. You passed "
                             f"`log_dir`={log_dir}.")
        unknown = sorted(set(kwargs) - set(_TENSORBOARD_ARGS))
        if unknown:
            raise TypeError(f"PruningSummaries: unexpected arguments {unknown}.")
        if kwargs:
            warnings.warn(f"PruningSummaries writes pruning scalars only; {sorted(kwargs)} "
                          "are keras.callbacks.TensorBoard arguments and are ignored.",
                          stacklevel=2)
        super().__init__()
        self.log_dir = log_dir
        self.update_freq = update_freq
        self._writer = None

    def _step(self):
        optimizer = getattr(self.model, "optimizer", None)
        if optimizer is not None and hasattr(optimizer, "iterations"):
            return int(keras.ops.convert_to_numpy(optimizer.iterations))
        steps = [w.step for w in api.find_wrappers(self.model)]
        return max(steps + [0])

    def _log_pruning_metrics(self, step):
        import tensorflow as tf

        scalars = {}
        for w in api.find_wrappers(self.model):
            if not w.built:
                continue
            thresholds = getattr(w, "_thresholds", [None] * len(w.masks))
            for info, mask, threshold in zip(w.prunable_weights, w.masks, thresholds):
                stem = f"{w.name}/{info.key}"
                scalars[f"{stem}_mask/sparsity"] = 1.0 - float(
                    np.mean(keras.ops.convert_to_numpy(mask)))
                if threshold is not None:
                    scalars[f"{stem}_threshold/threshold"] = float(
                        keras.ops.convert_to_numpy(threshold))
        if self._writer is None:
            self._writer = tf.summary.create_file_writer(os.path.join(self.log_dir, "metrics"))
        with self._writer.as_default(step=step):
            for tag, value in scalars.items():
                tf.summary.write(tag, tf.constant(value, tf.float32),
                                 metadata=scalar_metadata())
        self._writer.flush()

    def on_epoch_begin(self, epoch, logs=None):
        self._log_pruning_metrics(self._step())

    def on_train_batch_end(self, batch, logs=None):
        if isinstance(self.update_freq, int) and not isinstance(self.update_freq, bool):
            step = self._step()
            if step and step % self.update_freq == 0:
                self._log_pruning_metrics(step)

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.close()
            self._writer = None
