"""Keras callbacks that drive pruning during ``model.fit``.

``PruningCallback`` advances the pruning step once per training batch and
updates masks on the schedule's update steps. ``PruningLogger`` writes
per-layer sparsity and targets to TensorBoard.

In a custom training loop, two calls are needed::

    pruner = tfprune.PruningCallback()
    pruner.set_model(model)                       # once
    for batch, (x, y) in enumerate(dataset):
        pruner.on_train_batch_begin(batch)        # before each optimizer step
        ...                                       # forward, grads, optimizer.apply
"""

import os

import keras
import numpy as np

from tfprune import _global, scoring
from tfprune._followers import link_batchnorms
from tfprune._walk import find_wrappers
from tfprune.reporting import sparsity

__all__ = ["PruningCallback", "PruningLogger"]


def _set_step(variable, value):
    """Writes the step every batch, as cheaply as the backend allows.

    It runs once per layer per batch, so it matters: on TensorFlow a raw
    ``tf.Variable.assign(read_value=False)`` costs ~4x less than
    ``keras.Variable.assign``.
    """
    if keras.backend.backend() == "tensorflow":
        variable.value.assign(value, read_value=False)
    else:
        variable.assign(value)


class PruningCallback(keras.callbacks.Callback):
    """Advances the pruning step and updates masks during training.

    The step is stored in every wrapper's ``pruning_step`` variable (saved
    with the model and in checkpoints), so resuming a checkpoint continues
    the schedule exactly. Each call of ``on_train_batch_begin`` is one step;
    with ``steps_per_execution = k`` in ``fit`` the step advances by the steps
    the optimizer actually ran (fewer than ``k`` in an epoch's last execution).

    Args:
        score_data: ``(x, y)`` or a ``tf.data.Dataset`` used by data-dependent
            criteria (taylor, movement, snip, fisher, mean_activation, apoz):
            their statistics are collected on it (``tfprune.score``) at the
            current weights right before every mask update. Statistics the
            wrappers accumulated inside ``fit`` since the last update take
            precedence; ``score_data`` matters for updates with none yet
            (e.g. a schedule that prunes at step 0). The calibration
            criteria (``"wanda"``, ``"sparsegpt"``) need it for every update:
            each of their mask updates is a :func:`tfprune.oneshot` call on
            ``score_data`` at the schedule's current target, on the model as
            trained so far (SparseGPT also updates the kept weights).
            BatchNorm statistics are left to training (``recalibrate=False``).
            Without ``score_data`` they must have been calibrated before
            ``fit`` (``tfprune.oneshot(pruned, data)``), or ``fit`` refuses to
            start.
        score_batches: at most this many batches of ``score_data`` per update.

    Example:

    >>> import keras, numpy as np, tfprune as tp
    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, name="d")])
    >>> pruned = tp.prune(model, schedule=tp.PolynomialDecay(0, 0.5, 0, 3, frequency=1))
    >>> pruned.compile("sgd", "mse")
    >>> _ = pruned.fit(np.ones((8, 4)), np.ones((8, 8)), batch_size=2, verbose=0,
    ...                callbacks=[tp.PruningCallback()])
    >>> tp.sparsity(pruned)["d/kernel"]
    0.5
    """

    def __init__(self, score_data=None, score_batches=8):
        super().__init__()
        self.score_data = score_data
        self.score_batches = score_batches
        self._wrappers = None
        self._step = None       # the last step run (or about to be run)
        self._planned = None    # the last step whose mask updates were made
        self._count = None      # (step, optimizer iterations) at the start of fit

    def set_model(self, model):
        super().set_model(model)
        self._wrappers = find_wrappers(model)
        if not self._wrappers:
            raise ValueError(
                f"PruningCallback: model '{model.name}' has no pruned layers; "
                "create it with tfprune.prune(...) or tfprune.prune_layer(...).")
        for w in self._wrappers:
            w._driven = True
        link_batchnorms(model)  # again after loading: links are not saved
        self._step = self._planned = self._count = None

    def _ensure_ready(self):
        if self._wrappers is None:
            raise ValueError("PruningCallback: call set_model(model) first.")
        unbuilt = [w.name for w in self._wrappers if not w.built]
        if unbuilt:
            raise ValueError(
                f"PruningCallback: layers {unbuilt} are not built yet; call the "
                "model on a batch once before training.")
        if self._step is None:
            self._step = self._planned = max(w.step for w in self._wrappers)

    def _iterations(self):
        """The optimizer's step count, or None without an optimizer."""
        iterations = getattr(getattr(self.model, "optimizer", None), "iterations", None)
        return None if iterations is None else int(keras.ops.convert_to_numpy(iterations))

    def _steps_run(self):
        """The last step run so far in ``fit``, from the optimizer's count.

        With ``steps_per_execution = k`` the last execution of an epoch may run
        fewer than k steps, and Keras reports it as k all the same (its batch
        indices too), so only the optimizer knows how many steps ran. On JAX its
        count is current once ``self.model`` has synced the trainer's state.
        """
        if self._count is None or self._count[1] is None:
            return self._step
        step, iterations = self._count
        return step + self._iterations() - iterations

    def _execution(self, batch):
        """``(first, last)``: the steps not yet handled up to the coming execution's last."""
        k = int(getattr(self.model, "steps_per_execution", 1) or 1)
        step = self._step
        if k > 1:  # one step per call is exact; k per call is not at an epoch's end
            step = self._steps_run()
            steps = (self.params or {}).get("steps") if self._count is not None else None
            if steps and batch < steps:
                k = min(k, steps - batch)  # the epoch's last, shorter execution
        return self._planned + 1, step + k

    def _uncalibrated(self):
        """Wrappers with a calibration criterion, no statistics and an update due in this fit.

        Checked before the first batch: the update may be due thousands of
        steps in, and failing there would lose that training.
        """
        params = self.params or {}
        horizon = (params.get("steps") or 0) * (params.get("epochs") or 0) or 1
        steps = range(self._step + 1, self._step + 1 + min(horizon, 10**6))
        return [w.name for w in self._wrappers
                if getattr(w.criterion, "needs_calibration", False) and not w._stats
                and any(w.schedule.should_update(s) for s in steps)]

    def _calibrate(self, due):
        """Prunes the due calibration-criterion wrappers with ``tfprune.oneshot``.

        Returns the wrappers it handled. One call per target sparsity: ``oneshot``
        takes one sparsity for all the layers it is given.
        """
        from tfprune.calibration import oneshot  # same layer; imported late (heavier)

        handled = [w for w in due if getattr(w.criterion, "needs_calibration", False)]
        by_target = {}
        for w in handled:
            by_target.setdefault(float(w.schedule(due[w])), []).append(w)
        for target, group in by_target.items():
            for w in group:
                w.pruning_step.assign(due[w])
            oneshot(self.model, self.score_data, layers=[w.name for w in group],
                    sparsity=target, recalibrate=False)
        return handled

    def on_train_begin(self, logs=None):
        self._ensure_ready()
        if self.score_data is None:
            waiting = self._uncalibrated()
            if waiting:
                raise ValueError(
                    f"PruningCallback: layers {waiting} use a calibration criterion "
                    "('wanda' or 'sparsegpt') and have a mask update due in this fit, but "
                    "there are no calibration inputs. Pass PruningCallback(score_data=x) "
                    "(each update then runs tfprune.oneshot on it), or call "
                    "tfprune.oneshot(pruned, x) before fit.")
        self._count = (self._step, self._iterations())
        # Fail before the first batch, not at the first mask update.
        # Wrappers accumulate statistics during fit (tfprune.accumulate), so only
        # a mask update due at the very first step has nothing to score with.
        starving = [w.name for w in self._wrappers
                    if w.needs_data and not w._stats and self.score_data is None
                    and w.schedule.should_update(self._step + 1)]
        if starving:
            raise ValueError(
                f"PruningCallback: layers {starving} use a data-dependent criterion "
                "(gradients or activations) and their first mask update is due at the first "
                "step, before any statistics exist. Pass PruningCallback(score_data=(x, y)), "
                "call tfprune.score(model, data) first, or start the schedule later.")

    def on_train_batch_begin(self, batch, logs=None):
        self._ensure_ready()
        # With steps_per_execution = k, Keras calls this once per k steps; the
        # coming execution runs steps up to `last`, and masks due at any step not
        # yet handled are computed now with the latest due step's target.
        # self.model first: on JAX it syncs the trainer's state into the variables
        # (masks are scored from them), and the step then reads what we assign.
        first, last = self._execution(batch)
        self._step, self._planned = last, max(self._planned, last)
        due = {}
        for w in self._wrappers:
            steps = [s for s in range(first, last + 1) if w.schedule.should_update(s)]
            if steps:
                due[w] = steps[-1]
        if due and self.score_data is not None and any(w.needs_data for w in due):
            scoring.score(self.model, self.score_data, criterion=None,
                          batches=self.score_batches)
        if due and self.score_data is not None:
            for w in self._calibrate(due):
                del due[w]
        joint = [w for w in due if getattr(w, "scope", "layer") == "global"]
        if joint:
            step = max(due[w] for w in joint)
            masks = _global.global_masks(joint, joint[0].schedule(step), consume_stats=True)
            for w in joint:
                w.pruning_step.assign(due[w])
                w.apply_masks(masks.pop(w))  # popped: its buffers go once assigned
        for w, step in due.items():
            if w not in joint:
                w.update_masks(step=step)
        for w in self._wrappers:
            _set_step(w.pruning_step, last)

    def on_epoch_end(self, epoch, logs=None):
        # An epoch of unknown size may end inside an execution planned as k
        # steps: store the step that ran (checkpoints saved now carry it).
        if self._count is not None and int(getattr(self.model, "steps_per_execution", 1) or 1) > 1:
            step = self._steps_run()
            if step != self._step:
                self._step = step
                for w in self._wrappers:
                    _set_step(w.pruning_step, step)

    def on_train_end(self, logs=None):
        self._count = None  # later calls outside fit count one step per call again
        for w in self._wrappers or ():
            w._driven = False


def scalar_metadata():
    """TensorBoard metadata marking a summary as a scalar (shared with the TFMOT shim)."""
    from tensorflow.core.framework import summary_pb2

    meta = summary_pb2.SummaryMetadata()
    meta.plugin_data.plugin_name = "scalars"
    return meta


class PruningLogger(keras.callbacks.Callback):
    """Writes per-layer sparsity and target sparsity to TensorBoard.

    Scalars ``pruning/<layer>/<weight>/sparsity`` and
    ``pruning/<layer>/target`` are written at the end of every epoch (and
    every ``update_freq`` batches if it is an int).

    Args:
        log_dir: directory of the TensorBoard event files (a ``pruning``
            subdirectory is used, next to ``keras.callbacks.TensorBoard``'s).
        update_freq: ``"epoch"`` or a number of batches.

    Example:

    >>> import tfprune as tp
    >>> cb = tp.PruningLogger("/tmp/logs")
    """

    def __init__(self, log_dir, update_freq="epoch"):
        super().__init__()
        if update_freq != "epoch" and (not isinstance(update_freq, int) or update_freq < 1):
            raise ValueError(
                f"PruningLogger: update_freq must be 'epoch' or an int >= 1; got {update_freq!r}.")
        self.log_dir = os.fspath(log_dir)
        self.update_freq = update_freq
        self._writer = None
        self._batches = 0

    def _write(self, step):
        import tensorflow as tf  # TensorBoard event files

        if self._writer is None:
            self._writer = tf.summary.create_file_writer(os.path.join(self.log_dir, "pruning"))
        wrappers = find_wrappers(self.model)
        values = sparsity(self.model)
        scalars = {f"pruning/{key}/sparsity": value for key, value in values.items()}
        scalars.update({f"pruning/{w.name}/target": w.target_sparsity() for w in wrappers})
        if values:
            scalars["pruning/mean_sparsity"] = float(np.mean(list(values.values())))
        with self._writer.as_default(step=step):
            for tag, value in scalars.items():
                # tf.summary.write with the scalars plugin's metadata: the same
                # event TensorBoard's tf.summary.scalar writes, without needing
                # the tensorboard package installed to *write* logs.
                tf.summary.write(tag, tf.constant(float(value), tf.float32),
                                 metadata=scalar_metadata())
        self._writer.flush()

    def on_train_batch_end(self, batch, logs=None):
        self._batches += 1
        if isinstance(self.update_freq, int) and self._batches % self.update_freq == 0:
            self._write(self._batches)

    def on_epoch_end(self, epoch, logs=None):
        self._write(epoch)

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.close()
            self._writer = None
