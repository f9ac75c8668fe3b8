"""Iterative magnitude pruning with rewinding (lottery tickets, Frankle & Carbin 2019).

:func:`imp` trains, prunes the lowest-magnitude ``rate`` of the *surviving*
weights (per layer or globally), rewinds the survivors to their recorded
early values (initialisation, or step ``k`` of the first training run:
"late rewinding", Frankle et al. 2020) and repeats. After round ``k`` the
sparsity is :math:`1 - (1 - r)^k`.

With ``state_dir`` every finished round is saved (masks, metrics, the
rewind point); calling :func:`imp` again with the same arguments resumes
after the last finished round.
"""

import json
from pathlib import Path

import keras
import numpy as np

from tfprune import api
from tfprune._io import atomic_write
from tfprune._checks import fraction, integer, one_of
from tfprune._walk import layer_weights
from tfprune.finetune import FrozenMasks
from tfprune.granularity import keep_top

__all__ = ["imp", "IMPReport"]


class IMPReport:
    """Result of :func:`imp`: per-round sparsity, metrics and masks.

    Attributes:
        rows: list of dicts ``{"round", "sparsity", **metrics}``, one per
            trained round (round 0 is dense).
        masks: list (per round) of ``{weight name: mask array}``.
        model: the last round's trained pruned model (strip it with
            ``tfprune.strip``).

    >>> r = IMPReport([{"round": 0, "sparsity": 0.0, "acc": 0.9}], [{}], None)
    >>> print(r.table())
    | round | sparsity | acc |
    |---|---|---|
    | 0 | 0.0000 | 0.9000 |
    """

    def __init__(self, rows, masks, model):
        self.rows, self.masks, self.model = rows, masks, model

    def table(self):
        """Markdown table of the rounds."""
        keys = ["round", "sparsity"] + [k for k in self.rows[0] if k not in ("round", "sparsity")]
        fmt = lambda v: f"{v:.4f}" if isinstance(v, float) else str(v)  # noqa: E731
        lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
        lines += ["| " + " | ".join(fmt(r.get(k, "")) for k in keys) + " |" for r in self.rows]
        return "\n".join(lines)

    def plot(self, path=None, metric=None):
        """Plots ``metric`` against sparsity (needs matplotlib); saves to ``path``."""
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        metric = metric or next(k for k in self.rows[0] if k not in ("round", "sparsity"))
        fig, ax = plt.subplots(figsize=(5, 3.5))
        ax.plot([r["sparsity"] for r in self.rows], [r[metric] for r in self.rows], "o-")
        ax.set_xlabel("sparsity"), ax.set_ylabel(metric), ax.set_title("Iterative magnitude pruning")
        fig.tight_layout()
        if path:
            fig.savefig(path)
        return fig

    def __repr__(self):
        return f"IMPReport({len(self.rows)} rounds)\n{self.table()}"


class _RecordAt(keras.callbacks.Callback):
    """Snapshots the rewindable weights just before training step ``step``."""

    def __init__(self, step, variables):
        super().__init__()
        self.step, self.variables, self.seen, self.values = step, variables, 0, None

    def on_train_begin(self, logs=None):
        # fit() knows its length up front: fail before training, not after.
        steps, epochs = (self.params or {}).get("steps"), (self.params or {}).get("epochs")
        if self.values is None and steps and epochs and steps * epochs <= self.step - self.seen:
            raise ValueError(
                f"tfprune.lottery.imp: cannot rewind to step {self.step}: this fit() runs "
                f"only {steps * epochs} steps ({epochs} epochs x {steps}). Choose "
                f"rewind_to < {steps * epochs + self.seen}, or 'init'.")

    def on_train_batch_begin(self, batch, logs=None):
        # self.model first: on JAX it syncs the trainer's state into the variables.
        k = int(getattr(self.model, "steps_per_execution", 1) or 1)
        if self.values is None and self.seen == self.step:
            self.values = [keras.ops.convert_to_numpy(v).copy() for v in self.variables]
        self.seen += k


def _check_args(rounds, rate_per_round, rewind_to, scope):
    owner = "tfprune.lottery.imp"
    rounds = integer("rounds", rounds, owner, minimum=1)
    rate = fraction("rate_per_round", rate_per_round, owner, "(0, 1)")
    if rewind_to != "init" and (isinstance(rewind_to, bool) or not isinstance(rewind_to, int)
                                or rewind_to < 0):
        raise ValueError(
            f"{owner}: `rewind_to` must be 'init' or a training step >= 0 of "
            f"the first round; got {rewind_to!r}.")
    one_of("scope", scope, owner, ("layer", "global"))
    return rounds, rate


def _names(wrappers):
    return [f"{w.name}/{info.key}" for w in wrappers for info in w.prunable_weights]


def _next_masks(wrappers, target, scope):
    """Masks pruning the lowest surviving magnitudes up to ``target`` sparsity."""
    infos = [(info, m) for w in wrappers for info, m in zip(w.prunable_weights, w.masks)]
    weights = [np.abs(keras.ops.convert_to_numpy(i.variable)).astype(np.float64) for i, _ in infos]
    masks = [keras.ops.convert_to_numpy(m).astype(bool) for _, m in infos]
    if scope == "global":
        scores = np.concatenate([np.where(m, w, -1.0).ravel() for w, m in zip(weights, masks)])
        keep = _keep(scores, target, sum(m.sum() for m in masks))
        out, i = [], 0
        for m in masks:
            out.append(keep[i:i + m.size].reshape(m.shape))
            i += m.size
        return out
    return [_keep(np.where(m, w, -1.0).ravel(), target, m.sum()).reshape(m.shape)
            for w, m in zip(weights, masks)]


def _keep(scores, target, alive):
    """Keeps all but the ``round(target * n)`` lowest scores (dead ones score -1).

    Already-pruned weights stay pruned: the target is at least their share.
    Ties go by index (see ``keep_top``).
    """
    n = scores.size
    return keep_top(scores, max(float(target), (n - int(alive)) / n), min_keep=1)


def _save_npz(path, arrays):
    atomic_write(path, writer=lambda f: np.savez(f, *arrays))


def _load_npz(path):
    with np.load(path) as f:
        return [f[f"arr_{i}"] for i in range(len(f.files))]


def imp(build_fn_or_model, train_fn, rounds, rate_per_round, rewind_to="init",
        scope="layer", state_dir=None, skip=None):
    """Iterative magnitude pruning with rewinding; returns an :class:`IMPReport`.

    Args:
        build_fn_or_model: a built ``keras.Model`` (its current weights are the
            initialisation) or a function returning one.
        train_fn: ``train_fn(model, callbacks) -> metrics`` compiles (fresh
            optimizer) and trains ``model``, passing ``callbacks`` to ``fit``,
            and returns a dict of metrics (or one number, reported as
            ``"metric"``). Called ``rounds + 1`` times.
        rounds: pruning rounds ``k``; the last model has sparsity
            ``1 - (1 - rate_per_round) ** k``.
        rate_per_round: fraction of the surviving weights pruned per round.
        rewind_to: ``"init"`` or a training step of the first run.
        scope: ``"layer"`` (same rate in every layer) or ``"global"``.
        state_dir: directory keeping finished rounds; rerun to resume.
        skip: layer names left dense (e.g. the classifier).

    >>> import keras, numpy as np, tfprune as tp
    >>> x, y = np.random.rand(32, 8), np.random.rand(32, 2)
    >>> def train(m, callbacks):
    ...     m.compile("sgd", "mse")
    ...     return {"loss": m.fit(x, y, epochs=1, verbose=0, callbacks=callbacks).history["loss"][-1]}
    >>> net = lambda: keras.Sequential([keras.Input((8,)), keras.layers.Dense(16), keras.layers.Dense(2)])
    >>> report = tp.lottery.imp(net, train, rounds=2, rate_per_round=0.5)
    >>> [r["sparsity"] for r in report.rows]
    [0.0, 0.5, 0.75]
    """
    rounds, rate = _check_args(rounds, rate_per_round, rewind_to, scope)
    if not callable(train_fn):
        raise TypeError("tfprune.lottery.imp: `train_fn(model, callbacks)` must be callable.")
    model = build_fn_or_model if isinstance(build_fn_or_model, keras.Model) else build_fn_or_model()
    if not isinstance(model, keras.Model):
        raise TypeError(f"tfprune.lottery.imp: the build function returned {type(model).__name__}, not a keras.Model.")
    if api.find_wrappers(model):
        model = api.strip(model)
    if not any(l for _, l in api.walk_layers(model)
               if getattr(l, "built", False) and layer_weights(l)):
        raise ValueError(f"tfprune.lottery.imp: model '{model.name}' has nothing prunable "
                         "(no Dense/Conv/Embedding/RNN/attention kernel).")
    model = api.prune(model, schedule=FrozenMasks(0.0), skip=skip)
    wrappers = api.find_wrappers(model)
    if not wrappers:
        raise ValueError(f"tfprune.lottery.imp: every prunable layer of '{model.name}' is skipped.")
    for w in wrappers:
        w.pruning_step.assign(0)
        w._driven = True
    mask_ids = {id(m) for w in wrappers for m in w.masks} | {id(w.pruning_step) for w in wrappers}
    rewindable = [v for v in model.weights if id(v) not in mask_ids]

    state = Path(state_dir) if state_dir else None
    config = {"rounds": rounds, "rate_per_round": rate, "rewind_to": rewind_to, "scope": scope,
              "weights": _names(wrappers)}
    rows, all_masks, done = [], [], -1
    if state:
        state.mkdir(parents=True, exist_ok=True)
        cfg_path = state / "imp.json"
        if cfg_path.exists():
            saved = json.loads(cfg_path.read_text())
            if saved != config:
                raise ValueError(
                    f"tfprune.lottery.imp: {state} holds a run with different settings "
                    f"({saved}); use another state_dir or the same arguments ({config}).")
        else:
            atomic_write(cfg_path, json.dumps(config))
        if (state / "init.npz").exists():
            for v, a in zip(rewindable, _load_npz(state / "init.npz")):
                v.assign(a)
        else:
            _save_npz(state / "init.npz", [keras.ops.convert_to_numpy(v) for v in rewindable])
        while (state / f"round_{done + 1}.json").exists():
            done += 1
            rows.append(json.loads((state / f"round_{done}.json").read_text()))
            all_masks.append(dict(zip(config["weights"], _load_npz(state / f"masks_{done}.npz"))))

    init = [keras.ops.convert_to_numpy(v).copy() for v in rewindable]
    rewind = init if rewind_to in ("init", 0) else None
    if state and done >= 0 and rewind is None:
        rewind = _load_npz(state / "rewind.npz")
    if done >= 0:                       # resume: the masks of the next round, rewound weights
        if done == rounds:
            for v, a in zip(rewindable, _load_npz(state / "final.npz")):
                v.assign(a)
            _set_masks(wrappers, list(all_masks[-1].values()))
            return IMPReport(rows, all_masks, model)
        _set_masks(wrappers, _load_npz(state / f"masks_{done + 1}.npz"))
        _rewind(wrappers, rewindable, rewind)

    for r in range(done + 1, rounds + 1):
        callbacks = []
        recorder = None
        if r == 0 and rewind is None:
            recorder = _RecordAt(rewind_to, rewindable)
            callbacks.append(recorder)
        metrics = train_fn(model, callbacks)
        if not isinstance(metrics, dict):
            metrics = {"metric": float(metrics)}
        if recorder is not None:
            if recorder.values is None:
                raise ValueError(
                    f"tfprune.lottery.imp: rewind_to={rewind_to} was never recorded: the first "
                    f"training run took {recorder.seen} steps (did train_fn pass `callbacks` "
                    "to fit?). Choose rewind_to < that number, or 'init'.")
            rewind = recorder.values
            if state:
                _save_npz(state / "rewind.npz", rewind)
        masks_now = [keras.ops.convert_to_numpy(m) for w in wrappers for m in w.masks]
        total = sum(m.size for m in masks_now)
        row = {"round": r, "sparsity": round(1.0 - sum(float(m.sum()) for m in masks_now) / total, 6)}
        row.update({k: float(v) for k, v in metrics.items()})
        rows.append(row)
        all_masks.append(dict(zip(config["weights"], masks_now)))
        if r < rounds:
            new = _next_masks(wrappers, 1.0 - (1.0 - rate) ** (r + 1), scope)
        if state:
            _save_npz(state / f"masks_{r}.npz", masks_now)
            if r < rounds:
                _save_npz(state / f"masks_{r + 1}.npz", new)
            else:
                _save_npz(state / "final.npz", [keras.ops.convert_to_numpy(v) for v in rewindable])
            # Written last: a round counts as finished only once this exists.
            atomic_write(state / f"round_{r}.json", json.dumps(row))
        if r < rounds:
            _set_masks(wrappers, new)
            _rewind(wrappers, rewindable, rewind)
    return IMPReport(rows, all_masks, model)


def _set_masks(wrappers, masks):
    it = iter(masks)
    for w in wrappers:
        for m in w.masks:
            m.assign(next(it))


def _rewind(wrappers, rewindable, values):
    """Assigns the recorded values, times the mask for pruned kernels (bit-exact: x*1 = x)."""
    masked = {k: m for w in wrappers for k, m in w.variable_masks().items()}
    for v, a in zip(rewindable, values):
        if id(v) in masked:
            a = a * masked[id(v)].astype(a.dtype)
        v.assign(a)
