"""Resumable fine-tuning for ``tfprune-prune``: one checkpoint per epoch in a work folder.

A checkpoint is every variable of the model (weights, pruning masks and
steps, random-generator states) and of its optimizer, in ``epoch-<n>.npz``;
``state.json`` names the newest one and is replaced atomically after the
file is complete, so a kill at any moment leaves the previous checkpoint in
force. Each epoch reseeds the random generators and shuffles with its own
seed, so resuming after epoch ``n`` repeats exactly what an uninterrupted
run does from there.
"""

import json
import os
import sys
import time

from tfprune._io import atomic_write
from tfprune.cli._flags import UserError

# Keras and numpy are imported inside the functions: the command-line modules
# import nothing heavy before the flags are parsed.

STATE = "state.json"


class WorkDir:
    """The checkpoints of one run; ``settings`` must match to resume.

    With ``write=False`` (every process but the first of a data-parallel run)
    the state is read and kept up to date in memory, but no file is written.
    """

    def __init__(self, path, settings, write=True):
        self.path, self.settings, self.write = path, settings, write
        os.makedirs(path, exist_ok=True)
        self.state = {"settings": settings, "epoch": 0, "checkpoint": None, "extra": {},
                      "history": []}
        state_path = os.path.join(path, STATE)
        if os.path.exists(state_path):
            try:
                with open(state_path) as f:
                    state = json.load(f)
            except (OSError, ValueError) as e:  # written atomically: only a disk fault
                raise UserError(f"{state_path}: unreadable ({e}); delete --work_dir={path} "
                                "to start over.") from None
            if state.get("settings") != settings:
                changed = sorted(k for k in set(settings) | set(state.get("settings", {}))
                                 if settings.get(k) != state.get("settings", {}).get(k))
                raise UserError(f"--work_dir={path} holds a run with other settings "
                                f"({', '.join(changed)}); pass another --work_dir or delete "
                                "that folder to start over.")
            self.state = state

    @property
    def epoch(self):
        """Epochs finished (and checkpointed) so far."""
        return self.state["epoch"]

    @property
    def extra(self):
        """Values computed once per run and reused on resume (the plan, the baseline)."""
        return self.state["extra"]

    def _save_state(self):
        if not self.write:
            return
        text = json.dumps(self.state, indent=1).encode()
        atomic_write(os.path.join(self.path, STATE), text)

    def remember(self, **values):
        """Stores ``values`` in :attr:`extra` durably."""
        self.state["extra"].update(values)
        self._save_state()

    @property
    def history(self):
        """The logs of every finished epoch, resumed runs included."""
        return self.state["history"]

    def save(self, model, epoch, logs):
        """Checkpoints ``model`` (and its optimizer) as having finished ``epoch`` epochs."""
        import keras
        import numpy as np
        # Every process reads the values (with jax.distributed a read may be collective).
        arrays = {f"m{i}": keras.ops.convert_to_numpy(v) for i, v in enumerate(model.variables)}
        arrays.update({f"o{i}": keras.ops.convert_to_numpy(v)
                       for i, v in enumerate(model.optimizer.variables)})
        arrays["paths"] = np.array([v.path for v in model.variables])  # to name a mismatch
        name = f"epoch-{epoch}.npz"
        if not self.write:
            self.state.update(epoch=epoch, checkpoint=name,
                              history=self.state["history"][:epoch - 1] + [logs])
            return
        atomic_write(os.path.join(self.path, name), writer=lambda f: np.savez(f, **arrays))
        old = self.state["checkpoint"]
        self.state.update(epoch=epoch, checkpoint=name,
                          history=self.state["history"][:epoch - 1] + [logs])
        self._save_state()
        if old and old != name and os.path.exists(os.path.join(self.path, old)):
            os.remove(os.path.join(self.path, old))

    def restore(self, model):
        """Loads the newest checkpoint into ``model`` (compiled, optimizer built)."""
        import zipfile

        import numpy as np
        path = os.path.join(self.path, self.state["checkpoint"])
        try:
            with np.load(path) as data:
                arrays = {k: data[k] for k in data.files}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
            raise UserError(f"{path}: the checkpoint is unreadable ({str(e)[:120]}); delete "
                            f"--work_dir={self.path} to start over.") from None
        model_vars, opt_vars = model.variables, model.optimizer.variables
        if len([k for k in arrays if k[0] == "m"]) != len(model_vars) or \
                len([k for k in arrays if k[0] == "o"]) != len(opt_vars):
            # variable paths without the model's name, which differs between instances
            saved = [str(p).split("/", 1)[-1] for p in arrays.get("paths", [])]
            mine = [v.path.split("/", 1)[-1] for v in model_vars]
            diff = (f" (in the checkpoint only: {[p for p in saved if p not in mine]}; in "
                    f"the model only: {[p for p in mine if p not in saved]})" if saved else "")
            raise UserError(f"{path}: the checkpoint does not fit this model{diff}; delete "
                            f"--work_dir={self.path} to start over.")
        for i, v in enumerate(model_vars):
            v.assign(arrays[f"m{i}"])
        for i, v in enumerate(opt_vars):
            v.assign(arrays[f"o{i}"])


def fine_tune(model, x, y, work, *, epochs, batch_size, seed, callbacks, mask_sparsity,
              shard=None):
    """Trains ``model`` from ``work.epoch`` to ``epochs``, checkpointing every epoch.

    The logs of every epoch are in ``work.history``. ``shard`` (data-parallel
    processes) maps an epoch's shuffled sample order to this process's part of
    it; ``batch_size`` is then the per-process batch.
    """
    import keras
    import numpy as np
    model.optimizer.build(model.trainable_variables)
    if work.epoch:
        work.restore(model)
        print(f"resuming from {work.path}: {work.epoch}/{epochs} epochs done",
              file=sys.stderr, flush=True)
    for epoch in range(work.epoch, epochs):
        start = time.monotonic()
        keras.utils.set_random_seed(seed + epoch)
        order = np.random.default_rng(seed + epoch).permutation(len(x))
        if shard is not None:
            order = shard(order)
        hist = model.fit(x[order], y[order], batch_size=batch_size, epochs=epoch + 1,
                         initial_epoch=epoch, shuffle=False, verbose=0, callbacks=callbacks)
        logs = {k: float(v[-1]) for k, v in hist.history.items()}
        logs.update(epoch=epoch + 1, sparsity=mask_sparsity(model))
        work.save(model, epoch + 1, logs)
        fields = " ".join(f"{k} {v:.4f}" for k, v in logs.items() if k != "epoch")
        print(f"epoch {epoch + 1}/{epochs}: {fields} ({time.monotonic() - start:.0f} s)",
              file=sys.stderr, flush=True)
