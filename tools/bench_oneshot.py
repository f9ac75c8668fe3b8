"""One-shot pruning of a small character-level LM: held-out perplexity, time and memory.

    python tools/bench_oneshot.py                    # ~15 min on 2 busy cores

Data (offline, reproducible): the running interpreter's own standard library
sources, the ``*.py`` files directly in ``sysconfig.get_paths()["stdlib"]``
(no subdirectories), sorted by name, read as bytes (vocabulary 256). Every
10th file (index 9, 19, ...) is held out for evaluation; the rest is the
training text, from which the calibration windows are also drawn.

A causal Transformer LM (``--blocks`` blocks of pre-LayerNorm causal
self-attention + GELU FFN, width ``--d_model``) is trained for ``--steps``
Adam steps on random windows, then every criterion x pattern prunes a copy
of it once, with ``tp.oneshot`` on ``--calibration`` training windows, all
attention and FFN kernels (embeddings and the output head stay dense, as in
the Wanda and SparseGPT papers). Held-out perplexity (per byte) is measured
on fixed windows. One-shot times are measured side by side: ``--repeats``
rounds, criteria in a rotated order each round, median reported with its
ratio to Wanda's. Peak memory is the peak of Python/NumPy allocations during
``tp.oneshot`` (``tracemalloc``; TensorFlow's own buffers are not traced).
"""

import glob
import os
import platform
import sys
import sysconfig
import time
import tracemalloc

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# NumPy's BLAS threads, set before NumPy loads (``--blas_threads``, default 1): on
# the shared 2-core machine a multi-threaded BLAS was several times slower for these
# small factorisations than one thread (oversubscription; see docs/BENCHMARKS.md).
_BLAS = next((a.split("=", 1)[1] for a in sys.argv if a.startswith("--blas_threads=")), "1")
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, _BLAS)

from absl import app, flags  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import tfprune as tp  # noqa: E402

flags.DEFINE_integer("blocks", 2, "Transformer blocks")
flags.DEFINE_integer("d_model", 128, "model width")
flags.DEFINE_integer("heads", 4, "attention heads")
flags.DEFINE_integer("seq", 64, "window length (bytes)")
flags.DEFINE_integer("steps", 1200, "training steps")
flags.DEFINE_integer("batch", 32, "training batch size")
flags.DEFINE_integer("calibration", 128, "calibration windows")
flags.DEFINE_integer("eval_windows", 256, "held-out windows for perplexity")
flags.DEFINE_integer("repeats", 2, "timing rounds of every one-shot variant")
flags.DEFINE_float("sparsity", 0.5, "unstructured sparsity")
flags.DEFINE_list("criteria", ["magnitude", "wanda", "sparsegpt"], "criteria")
flags.DEFINE_list("patterns", ["unstructured", "2:4"], "granularities")
flags.DEFINE_integer("blas_threads", 1, "NumPy BLAS threads (read before NumPy loads)")
F = flags.FLAGS


def corpus():
    root = sysconfig.get_paths()["stdlib"]
    files = sorted(glob.glob(os.path.join(root, "*.py")))
    train, held = [], []
    for i, path in enumerate(files):
        with open(path, "rb") as f:
            (held if i % 10 == 9 else train).append(f.read())
    as_array = lambda parts: np.frombuffer(b"\n".join(parts), np.uint8).astype(np.int32)
    return root, len(files), as_array(train), as_array(held)


def windows(text, n, seq, rng):
    starts = rng.integers(0, len(text) - seq - 1, size=n)
    idx = starts[:, None] + np.arange(seq + 1)[None, :]
    chunk = text[idx]
    return chunk[:, :-1], chunk[:, 1:]


@keras.saving.register_keras_serializable(package="bench_oneshot")
class AddPositions(keras.layers.Layer):
    """Adds a learned embedding of each position."""

    def build(self, input_shape):
        self.table = self.add_weight(shape=tuple(input_shape[1:]), initializer="zeros",
                                     name="positions")

    def call(self, x):
        return x + self.table


def build_lm(vocab=256):
    d, seq = F.d_model, F.seq
    tokens = keras.Input((seq,), dtype="int32", name="tokens")
    x = AddPositions(name="positions")(keras.layers.Embedding(vocab, d, name="embed")(tokens))
    for b in range(F.blocks):
        h = keras.layers.LayerNormalization(name=f"b{b}_ln1")(x)
        h = keras.layers.MultiHeadAttention(F.heads, d // F.heads, name=f"b{b}_attn")(
            h, h, use_causal_mask=True)
        x = x + h
        h = keras.layers.LayerNormalization(name=f"b{b}_ln2")(x)
        h = keras.layers.Dense(4 * d, activation="gelu", name=f"b{b}_ffn1")(h)
        x = x + keras.layers.Dense(d, name=f"b{b}_ffn2")(h)
    x = keras.layers.LayerNormalization(name="ln_f")(x)
    return keras.Model(tokens, keras.layers.Dense(vocab, name="head")(x), name="char_lm")


def perplexity(model, x, y):
    logits = model.predict(x, batch_size=64, verbose=0)
    ce = keras.losses.sparse_categorical_crossentropy(y, logits, from_logits=True)
    return float(np.exp(np.mean(keras.ops.convert_to_numpy(ce))))


def copy(model):
    clone = keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    return clone


def main(argv):
    del argv
    tf.get_logger().setLevel("ERROR")   # predict() on many model copies retraces: expected
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    root, n_files, train, held = corpus()
    x_eval, y_eval = windows(held, F.eval_windows, F.seq, np.random.default_rng(1))
    calib, _ = windows(train, F.calibration, F.seq, np.random.default_rng(2))

    model = build_lm()
    model.compile(keras.optimizers.Adam(2e-3), keras.losses.SparseCategoricalCrossentropy(
        from_logits=True))
    start = time.perf_counter()
    for _ in range(F.steps // 100):
        x, y = windows(train, 100 * F.batch, F.seq, rng)
        model.fit(x, y, batch_size=F.batch, epochs=1, verbose=0, shuffle=False)
    train_s = time.perf_counter() - start

    variants = [(c, p) for p in F.patterns for c in F.criteria]
    sparsity = {p: (F.sparsity if p == "unstructured" else 0.5) for p in F.patterns}
    times = {v: [] for v in variants}
    results = {}
    for r in range(F.repeats):
        order = variants[r % len(variants):] + variants[:r % len(variants)]
        for crit, pattern in order:
            pruned = copy(model)
            tracemalloc.start()
            t0 = time.perf_counter()
            _, report = tp.oneshot(pruned, calib, criterion=crit, sparsity=sparsity[pattern],
                                   granularity=pattern, skip=["head"],
                                   num_samples=F.calibration, batch_size=64)
            times[(crit, pattern)].append(time.perf_counter() - t0)
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            if r == 0:
                errors = [row["error"] for row in report]
                sp = tp.sparsity(pruned)
                pruned_keys = [k for k in sp if not k.startswith(("embed", "head"))]
                results[(crit, pattern)] = dict(
                    ppl=perplexity(pruned, x_eval, y_eval), error=float(np.mean(errors)),
                    sparsity=float(np.mean([sp[k] for k in pruned_keys])), peak=peak)

    dense_ppl = perplexity(model, x_eval, y_eval)
    print(f"\nCommand: python tools/bench_oneshot.py --blocks {F.blocks} --d_model {F.d_model} "
          f"--steps {F.steps} --calibration {F.calibration} --repeats {F.repeats} "
          f"--blas_threads={os.environ['OPENBLAS_NUM_THREADS']}")
    print(f"{platform.machine()}, {os.cpu_count()} cores (shared with other jobs); python "
          f"{platform.python_version()}, tensorflow {tf.__version__}, keras "
          f"{keras.__version__}, numpy {np.__version__}, tfprune {tp.__version__}")
    print(f"data: {n_files} files {root}/*.py, held out every 10th: train {len(train)} bytes, "
          f"held-out {len(held)} bytes; {F.eval_windows} held-out windows of {F.seq}")
    print(f"model: {F.blocks} blocks, d_model {F.d_model}, {F.heads} heads, "
          f"{model.count_params()} parameters; trained {F.steps} steps of {F.batch} in "
          f"{train_s:.0f} s; calibration {F.calibration} windows ({F.calibration * F.seq} rows)\n")
    wanda = {p: np.median(times[("wanda", p)]) for p in F.patterns if ("wanda", p) in times}
    print("| model | pattern | sparsity (pruned kernels) | held-out ppl | mean rel. layer "
          "error | one-shot s (median) | time / wanda | peak traced MiB |")
    print("|---|---|---|---|---|---|---|---|")
    print(f"| dense | - | 0 | {dense_ppl:.3f} | - | - | - | - |")
    for crit, pattern in variants:
        res, t = results[(crit, pattern)], float(np.median(times[(crit, pattern)]))
        ratio = f"{t / wanda[pattern]:.2f}" if pattern in wanda else "-"
        print(f"| {crit} | {pattern} | {res['sparsity']:.3f} | {res['ppl']:.3f} | "
              f"{res['error']:.4f} | {t:.2f} | {ratio} | {res['peak'] / 2**20:.1f} |")


if __name__ == "__main__":
    app.run(main)
