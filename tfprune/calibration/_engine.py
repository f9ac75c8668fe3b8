r"""``tfprune.oneshot``: prune a trained model once, layer by layer, on calibration data."""

import math
import time

import keras
import numpy as np

import tfprune._checks as checks
from tfprune import _data
from tfprune import criteria as criteria_lib
from tfprune import granularity as granularity_lib
from tfprune import schedules
from tfprune._walk import find_wrappers
from tfprune.batchnorm import batchnorms, recalibrate_batchnorm
from tfprune.api import find_layers
from tfprune.calibration import _inputs, _solvers
from tfprune.calibration.criteria import SparseGPT, Wanda
from tfprune.calibration.report import OneShotReport

__all__ = ["oneshot"]

OWNER = "tfprune.oneshot"


def oneshot(model, data, *, criterion=None, sparsity=None, granularity=None, layers=None,
            skip=None, num_samples=128, batch_size=32, damp=0.01, block_size=128,
            recalibrate=True):
    r"""Prunes ``model`` in one shot from calibration data (Wanda, SparseGPT, magnitude).

    Kernels are pruned one step at a time in the order the forward pass calls
    them (a layer, or attention's q/k/v projections together, then its
    output projection).
    Each step runs the model, *as pruned so far*, on the calibration
    samples, reads the inputs ``X`` (rows: samples x positions) of its
    kernels, accumulates :math:`H = X^T X` (each batch's product in float32,
    the sum in float64), and prunes:

    * ``"wanda"``: :math:`s_{ij} = |W_{ij}|\,\|X_{:,j}\|_2` (the norms are
      :math:`\sqrt{H_{jj}}`); the lowest ``round(s * in)`` of every output
      row are zeroed (N:M: the lowest of every ``m`` inputs); kept weights
      unchanged;
    * ``"sparsegpt"``: OBS reconstruction with :math:`H + \lambda I`,
      :math:`\lambda = \mathrm{damp}\cdot\overline{\mathrm{diag}\,H}`, in
      column blocks of ``block_size`` with lazy updates; kept weights are
      *updated* to minimise :math:`\|WX - W'X\|^2`
      (see ``tfprune.calibration.sparsegpt``);
    * ``"magnitude"`` or any data-free criterion: scores compared over the
      whole layer (N:M: per group); kept weights unchanged.

    Memory: besides the model and one batch of activations (and its ``X``),
    one step holds one float64 Gram matrix per kernel of the step, ``8 *
    in^2`` bytes each (``3 * 8 * d_model^2`` for attention's q/k/v step),
    plus one batch's product per distinct input while a batch is added;
    SparseGPT holds about three more ``in x in`` float64 matrices while it
    solves a kernel. Nothing grows with the number of samples or layers.

    Dense, EinsumDense, MultiHeadAttention (its four projections), Conv1D
    (causal too) and Conv2D (``groups=1``, channels_last, unfolded
    im2col-style into rows of ``kh*kw*in`` inputs) are covered; other
    prunable layers (Embedding, recurrent, depthwise, separable, transposed
    and 3D convolutions) are left dense and listed in ``report.skipped``.

    Args:
        model: a built Keras model (Functional, Sequential or subclassed; kernels
            inside custom layers, e.g. a Transformer block written as a
            ``Layer`` subclass, are reached too), plain (its kernels are
            modified in place) or wrapped by ``tfprune.prune`` (its wrappers'
            kernels and masks are set, so ``tfprune.strip`` gives the same
            model; each wrapper's criterion, granularity and final sparsity
            are used unless given here, and a ``OneShot`` schedule's step is
            marked done so ``PruningCallback`` does not prune again).
        data: calibration inputs: ``x`` (an array, or a list with one array per
            model input), ``(x, y)`` (``y`` ignored), a ``tf.data.Dataset``
            or an iterator of such batches.
        criterion: ``"wanda"`` (default for plain models), ``"sparsegpt"``,
            ``"magnitude"`` or another data-free criterion.
        sparsity: fraction of each kernel to remove, ``[0, 1)``; default 0.5, or
            ``1 - n/m`` for N:M (the full pattern). With N:M each group of ``m``
            drops ``min(m - n, round(sparsity * m))``, as ``tfprune.NofM`` does.
        granularity: ``"unstructured"`` (default) or ``"N:M"`` (``"2:4"``,
            ``"4:8"``; ``n`` kept in every ``m`` consecutive inputs).
        layers: names of the only layers to prune (default: all supported).
        skip: names of layers to leave dense (e.g. the output head).
        num_samples: calibration samples used (at most); SparseGPT needs at
            least ``in`` rows (samples x positions) per kernel and says how many
            samples that is when there are too few.
        batch_size: samples per forward pass.
        damp: SparseGPT's dampening :math:`\lambda / \overline{\mathrm{diag}\,H}`,
            ``>= 0``. It makes :math:`H` invertible when inputs are collinear; if
            the Cholesky factorisation still fails the error says to raise it.
        block_size: SparseGPT's columns per lazy-update block (a multiple of ``m``
            for N:M).
        recalibrate: after pruning, re-estimate every BatchNormalization's
            moving mean and variance on the calibration samples
            (:func:`tfprune.recalibrate_batchnorm`; no weight is trained).
            Pruned kernels shift the statistics BatchNorm normalises with: on
            a BatchNorm CNN pruned to 80% without fine-tuning the stale ones
            cost most of the accuracy (docs/oneshot.md). ``False`` keeps them.

    Returns:
        ``(model, report)``: the same model object, pruned, and a
        :class:`~tfprune.calibration.OneShotReport` with, per kernel, its
        sparsity and relative reconstruction error
        :math:`\|WX - W'X\|_F^2 / \|WX\|_F^2` on its calibration inputs.

    Example:

    >>> import keras, numpy as np, tfprune as tp
    >>> model = keras.Sequential([keras.Input((16,)), keras.layers.Dense(8, name="fc"),
    ...                           keras.layers.Dense(4, name="out")])
    >>> x = np.random.default_rng(0).normal(size=(64, 16)).astype("float32")
    >>> _, report = tp.oneshot(model, x, criterion="sparsegpt", sparsity=0.5, skip=["out"])
    >>> tp.sparsity(model)["fc/kernel"], report["fc/kernel"]["error"] < 0.5
    (0.5, True)
    """
    if not isinstance(model, keras.Model):
        raise TypeError(f"{OWNER} expects a keras.Model; got {type(model).__name__}.")
    if not model.built:
        raise ValueError(f"{OWNER}: model '{model.name}' is not built: give it an Input or "
                         "call it on data once.")
    num_samples = checks.integer("num_samples", num_samples, OWNER, 1)
    batch_size = checks.integer("batch_size", batch_size, OWNER, 1)
    block_size = checks.integer("block_size", block_size, OWNER, 1)
    damp = checks.non_negative("damp", damp, OWNER)
    if sparsity is not None:
        sparsity = checks.sparsity("sparsity", sparsity, OWNER)
    wrappers = find_wrappers(model)
    named = find_layers(model, layers or (), "layers")
    for layer in named:
        reason = _inputs.unsupported_reason(layer)
        if reason:
            raise ValueError(f"{OWNER}: `layers` names layer '{layer.name}', which one-shot "
                             f"calibration cannot prune: {reason}.")
    # Default: every supported layer of a plain model; only the wrappers of a wrapped one.
    selected = {id(layer) for layer in named} if layers is not None else (
        {id(w) for w in wrappers} if wrappers else None)
    skipped = {id(layer) for layer in find_layers(model, skip or (), "skip")}
    found, left = _inputs.targets(model, selected, skipped)
    if not found:
        raise ValueError(f"{OWNER}: model '{model.name}' has no layer to prune "
                         f"(left dense: {left or 'none'}).")
    settings = {id(t): _settings(t, criterion, sparsity, granularity, block_size)
                for t in found}
    samples = _calibration(model, data, num_samples)
    steps, rows_per_sample = _dry_run(model, found, samples, left)
    _check_rows(steps, settings, rows_per_sample, len(samples[0]))

    report = OneShotReport(skipped=left)
    for step in steps:
        grams = _collect(model, step, samples, batch_size)
        for t in step:
            gram, rows = grams[id(t)]
            report.add(_prune(t, gram, rows, settings[id(t)], damp, block_size))
    norms = [bn.name for bn in batchnorms(model)] if recalibrate else []
    if norms:
        recalibrate_batchnorm(model, samples[0] if len(samples) == 1 else (samples, None),
                              batch_size=batch_size)
        report.recalibrated = norms
    for w in wrappers:
        if isinstance(w.schedule, schedules.OneShot) and any(
                t.wrapper is w for step in steps for t in step):
            w.pruning_step.assign(max(w.step, w.schedule.step))
    return model, report


def _settings(t, criterion, sparsity, granularity, block_size):
    w = t.wrapper
    crit = criteria_lib.get(criterion if criterion is not None else
                            (w.criterion if w else "wanda"))
    gran = granularity_lib.get(granularity if granularity is not None else
                               (w.granularity if w else "unstructured"))
    nm_default = 1.0 - gran.n / gran.m if isinstance(gran, granularity_lib.NofM) else 0.5
    s = sparsity if sparsity is not None else (
        float(getattr(w.schedule, "final_sparsity", 0.5)) if w else nm_default)
    if crit.needs_gradients or crit.needs_activations:
        raise ValueError(
            f"{OWNER}: criterion {crit!r} needs gradients or output activations; one-shot "
            "calibration takes 'wanda', 'sparsegpt' or a data-free criterion such as "
            "'magnitude' (for gradient criteria use tfprune.score).")
    if not isinstance(gran, (granularity_lib.Unstructured, granularity_lib.NofM)):
        raise ValueError(f"{OWNER}: granularity {gran!r} is not supported; one-shot "
                         "calibration takes 'unstructured' or an N:M pattern such as '2:4'.")
    if isinstance(gran, granularity_lib.NofM):
        gran.check(t.info, _inputs.layer_path(t))
        if isinstance(crit, SparseGPT) and block_size % gran.m:
            raise ValueError(f"{OWNER}: block_size={block_size} must be a multiple of "
                             f"m={gran.m} for N:M SparseGPT.")
    return crit, gran, s


def _calibration(model, data, limit):
    """The calibration inputs as one array per model input, at most ``limit`` samples."""
    if isinstance(data, dict):  # {input name: array} (keras-hub backbones)
        data = _by_input_name(model, data)
    src = _data.check(data, OWNER, labels=False, name="data")
    if src.kind == "arrays":
        arrays = _data.input_arrays(src.x, OWNER)
    else:
        arrays = _data.input_arrays(
            (b[0] for b in _data.as_batches(src, 32, OWNER, labels=False)), OWNER, limit=limit)
    arrays = [a[:limit] for a in arrays]
    try:
        specs = model.inputs
    except (AttributeError, ValueError):
        specs = None
    if not specs:  # a subclassed model: the forward pass on one sample checks the data
        return arrays
    if len(arrays) != len(specs):
        raise ValueError(f"{OWNER}: model '{model.name}' has {len(specs)} inputs "
                         f"{[t.name for t in specs]}; the calibration data gives "
                         f"{len(arrays)} arrays (a two-item tuple or list is read as "
                         "(x, y): pass ([x1, x2], None) for a two-input model).")
    for a, t in zip(arrays, specs):
        expected = tuple(t.shape)
        shape_ok = a.ndim == len(expected) and all(
            e is None or e == d for e, d in zip(expected[1:], a.shape[1:]))
        if not shape_ok:
            raise ValueError(
                f"{OWNER}: calibration data for input '{t.name}' of model '{model.name}' "
                f"has shape {a.shape}; expected {expected} (samples first).")
        want_int = "int" in str(t.dtype)
        if a.dtype.kind not in "biuf" or (want_int and a.dtype.kind == "f"):
            raise TypeError(
                f"{OWNER}: calibration data for input '{t.name}' of model '{model.name}' "
                f"has dtype {a.dtype}; expected {t.dtype} "
                f"({'integer ids' if want_int else 'numbers'}).")
    return arrays


def _batches(samples, batch_size):
    for i in range(0, len(samples[0]), batch_size):
        batch = [a[i:i + batch_size] for a in samples]
        yield batch[0] if len(batch) == 1 else batch


def _forward(model, batch):
    struct = getattr(model, "_inputs_struct", None)
    if isinstance(struct, dict) and isinstance(batch, list):  # dict inputs (keras-hub)
        batch = dict(zip([t.name for t in model.inputs], batch))
    try:
        model(batch, training=False)
    except _inputs.Stop:
        pass


def _dry_run(model, found, samples, left):
    """``(steps, rows per sample)`` from one sample: call order, call counts, input rows.

    Also the check that the model runs on the data at all, before any work.
    """
    rows, first, first_input = {}, {}, {}

    def record(t, inputs):
        if id(t) not in first:
            first[id(t)], first_input[id(t)] = len(first), inputs
            rows[id(t)] = _inputs.input_rows(t.sublayer, inputs).shape[0]
            t.calls = 0
        t.calls += 1

    with _inputs.capture(found, record, stop=False):
        try:
            _forward(model, next(_batches(samples, 1)))
        except Exception as e:  # a shape the model cannot take: say it before any work
            raise ValueError(f"{OWNER}: model '{model.name}' cannot run on the calibration "
                             f"data: {type(e).__name__}: {e}") from e
    left.extend((_inputs.layer_path(t), "never called in the forward pass")
                for t in found if id(t) not in first)
    return _inputs.steps(found, first, first_input), rows


def _check_rows(steps, settings, rows_per_sample, n):
    short = []
    for t in (t for step in steps for t in step):
        if not isinstance(settings[id(t)][0], SparseGPT):
            continue
        d_in = int(np.prod(t.info.shape)) // _out_units(t.info)
        per = rows_per_sample.get(id(t), 0)
        if per * n < d_in:
            short.append((math.ceil(d_in / max(per, 1)), t, d_in, per))
    if short:
        need, t, d_in, per = max(short, key=lambda s: s[0])
        raise ValueError(
            f"{OWNER}: too few calibration samples for SparseGPT: {_inputs.describe_layer(t)} "
            f"has {d_in} inputs, so its Hessian X^T X needs at least {d_in} rows (samples x "
            f"positions, {per} per sample), but {n} samples give {n * per}. Pass at least "
            f"{need} samples (num_samples and data).")


def _out_units(info):
    ndim = len(info.shape)
    return int(np.prod([info.shape[int(a) % ndim] for a in info.out_axes]))


def _collect(model, step, samples, batch_size):
    """``{id(target): (X^T X float64, rows)}`` over the calibration samples."""
    acc = {id(t): [0.0, 0] for t in step}
    cache = {}

    def record(t, inputs):
        conv = isinstance(t.sublayer, (keras.layers.Conv1D, keras.layers.Conv2D))
        key = (id(inputs), id(t.sublayer) if conv else getattr(t.sublayer, "equation", "dense"))
        if key not in cache:  # q/k/v of self-attention read one tensor: one product
            X = _inputs.input_rows(t.sublayer, inputs)
            cache[key] = (inputs, (X.T @ X).astype(np.float64), X.shape[0])
        _, gram, n = cache[key]
        acc[id(t)][0] = acc[id(t)][0] + gram
        acc[id(t)][1] += n

    with _inputs.capture(step, record) as seen:
        for batch in _batches(samples, batch_size):
            _inputs.reset(seen)
            cache.clear()
            _forward(model, batch)
    return {k: (np.asarray(g), n) for k, (g, n) in acc.items()}


def _broadcast(vector, info):
    """A per-input vector of the ``(out, in)`` view, broadcast to the kernel's shape."""
    n_out = _out_units(info)
    full = np.broadcast_to(np.asarray(vector)[None, :], (n_out, len(vector)))
    return granularity_lib.from_matrix(full, info.shape, info.out_axes)


def _prune(t, gram, rows, setting, damp, block_size):
    started = time.perf_counter()
    crit, gran, s = setting
    info = t.info
    kernel = keras.ops.convert_to_numpy(info.variable)
    W = granularity_lib.to_matrix(kernel.astype(np.float64), info.out_axes)
    nm = (gran.n, gran.m) if isinstance(gran, granularity_lib.NofM) else None
    if isinstance(crit, SparseGPT):
        try:
            W2, keep, d = _solvers.solve(W, gram, s, nm=nm, damp=damp, block_size=block_size)
            stats = {"hinv_diag": _broadcast(d, info)}
        except _solvers.NotPositiveDefinite:
            raise ValueError(
                f"{OWNER}: the calibration Hessian X^T X of {_inputs.describe_layer(t)} is "
                f"not positive definite even with damp={damp} (lambda = damp * mean(diag H) "
                "is added to its diagonal): raise damp (e.g. 0.1) or give more, more varied "
                "calibration samples.") from None
    else:
        stats = {"input_norm": _broadcast(np.sqrt(np.diag(gram)), info)} \
            if isinstance(crit, Wanda) else {}
        scores = granularity_lib.to_matrix(crit.score(kernel, stats), info.out_axes)
        if nm is not None:
            keep = _solvers.keep_n_of_m(scores, s, *nm)
        elif isinstance(crit, Wanda):
            keep = _solvers.keep_rows(scores, s)
        else:
            keep = _solvers.keep_layer(scores, s)
        W2 = W * keep
    error = _solvers.relative_error(W, W2, gram)
    info.variable.assign(granularity_lib.from_matrix(W2, kernel.shape, info.out_axes)
                         .astype(kernel.dtype))
    if t.wrapper is not None:
        t.wrapper.masks[t.index].assign(
            granularity_lib.from_matrix(keep, kernel.shape, info.out_axes).astype("float32"))
        t.wrapper.set_stats(info.key, stats)
    return {"key": t.key, "criterion": getattr(crit, "registered_name", type(crit).__name__),
            "granularity": "unstructured" if nm is None else f"{nm[0]}:{nm[1]}",
            "sparsity": float(np.mean(W2 == 0)), "error": error, "rows": int(rows),
            "inputs": int(W.shape[1]), "seconds": time.perf_counter() - started}


def _by_input_name(model, data):
    """``([array per model input], None)`` from ``{input name: array}``; an error names what is missing."""
    names = [t.name for t in getattr(model, "inputs", None) or []]
    missing = [n for n in names if n not in data]
    if not names or missing:
        raise ValueError(f"{OWNER}: calibration data is a dict with keys {sorted(data)}; model "
                         f"'{model.name}' has inputs {names}"
                         + (f" (missing {missing})." if missing else "."))
    return [np.asarray(data[n]) for n in names], None  # (x, y) form: x is the list
