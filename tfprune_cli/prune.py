"""tfprune-prune: prune and fine-tune a .keras model, resumably, with a JSON summary.

Example:

    tfprune-prune --model model.keras --data train.npz --output pruned.keras \\
        --schedule=polynomial --target_sparsity=0.8 --epochs=4 --strip --export=m.tflite

--data is a .npz file with x_train, y_train (and optionally x_test, y_test to
measure accuracy before and after); --dataset=digits or mnist uses the
bundled offline data instead. --plan=plan.json ({layer: sparsity}) sets
per-layer targets; --allocate runs a small sensitivity sweep first and
allocates --target_sparsity (or --target_flops) over the layers. With
--granularity=channels, --allocate --target_latency_ms=T plans the channel
widths whose LiteRT latency, predicted by a per-layer latency table of the
model (measured once, cached in --latency_cache), is at most T ms.

Every epoch is checkpointed into --work_dir; running the same command again
after a crash or a kill resumes from the last finished epoch and ends with
the same pruning step, masks and sparsity as an uninterrupted run.
"""

import json
import os

from absl import flags

from tfprune_cli import _inputs
from tfprune_cli._flags import UserError, define

PROG = "tfprune-prune"
FLAGS = flags.FLAGS
DATASETS = ("mnist", "digits")
SCHEDULES = ("polynomial", "constant", "one_shot")
CHANNELS = ("channel", "channels", "filter", "filters", "neuron", "neurons")


def define_flags():
    """Defines this app's flags (at run time, so importing the module is side-effect free).

    Returns their names.
    """
    return [
        define(flags.DEFINE_string, "model", None, "Path to the .keras model to prune."),
        define(flags.DEFINE_string, "data", None,
               "Training data: a .npz file with arrays x_train, y_train and optionally "
               "x_test, y_test (accuracy before/after). x must match the model's input."),
        define(flags.DEFINE_enum, "dataset", None, list(DATASETS),
               "Instead of --data: a bundled offline data set (train and test splits)."),
        define(flags.DEFINE_bool, "scale_uint8", True, _inputs.SCALE_UINT8_HELP),
        define(flags.DEFINE_integer, "max_samples", 0,
               "Use only the first N training samples (0 = all)."),
        define(flags.DEFINE_string, "output", None, "Where to write the pruned .keras model."),
        define(flags.DEFINE_bool, "strip", False,
               "Write --output without pruning wrappers (plain Keras, masks folded in)."),
        define(flags.DEFINE_bool, "shrink", False,
               "Like --strip, and physically remove channels that are entirely zero."),
        define(flags.DEFINE_string, "export", None,
               "Also convert the stripped model to this .tflite file (sparse='auto')."),
        define(flags.DEFINE_string, "summary_json", None,
               "Where to write the JSON summary (default: <output>.summary.json)."),
        define(flags.DEFINE_string, "work_dir", None,
               "Checkpoints, one per epoch (default: <output>.work); re-running the same "
               "command resumes from it."),
        define(flags.DEFINE_enum, "schedule", "polynomial", list(SCHEDULES),
               "polynomial: sparsity rises from --initial_sparsity to --target_sparsity "
               "between --begin_step and --end_step; constant: --target_sparsity from "
               "--begin_step on; one_shot: --target_sparsity once, at --begin_step."),
        define(flags.DEFINE_float, "target_sparsity", 0.5,
               "Final sparsity in (0, 1) (per layer, or the overall budget with --allocate)."),
        define(flags.DEFINE_float, "initial_sparsity", 0.0,
               "Starting sparsity of the polynomial schedule."),
        define(flags.DEFINE_integer, "begin_step", 0, "First pruning step (training batch)."),
        define(flags.DEFINE_integer, "end_step", -1,
               "Last step of the polynomial ramp (-1: two thirds of the training steps)."),
        define(flags.DEFINE_integer, "frequency", 0,
               "Steps between mask updates (0: every quarter epoch)."),
        define(flags.DEFINE_string, "criterion", "magnitude", "Pruning criterion name."),
        define(flags.DEFINE_string, "granularity", "unstructured",
               "Granularity name ('unstructured', 'channels', ...)."),
        define(flags.DEFINE_string, "plan", None,
               "JSON file {layer: sparsity} of per-layer targets, e.g. written by "
               "tfprune-sensitivity --target_sparsity=0.8 --plan=plan.json."),
        define(flags.DEFINE_bool, "allocate", False,
               "Sweep layer sensitivity first and allocate --target_sparsity (or "
               "--target_flops) over the layers."),
        define(flags.DEFINE_float, "target_flops", None,
               "With --allocate: multiply-adds per sample to keep in the analysed layers "
               "(as tfprune.structure.count counts them), instead of a sparsity."),
        define(flags.DEFINE_float, "target_latency_ms", None,
               "With --allocate --granularity=channels: the whole model's LiteRT latency "
               "budget in ms (batch 1, --latency_threads), predicted by a per-layer latency "
               "table of the model (tfprune.hardware.latency_table)."),
        define(flags.DEFINE_string, "latency_cache", None,
               "JSON cache of the per-layer latencies of --target_latency_ms (default: "
               "<output>.latency.json); a re-run reuses what it holds."),
        define(flags.DEFINE_bool, "latency_calibrate", True,
               "With --target_latency_ms: time each plan against the dense model and "
               "correct the table's budget until the measured latency meets it "
               "(tfprune.hardware.allocate_measured); --nolatency_calibrate trusts the "
               "table's prediction."),
        define(flags.DEFINE_integer, "latency_threads", 1,
               "LiteRT threads the latency table is measured with."),
        define(flags.DEFINE_integer, "round_to", 0,
               "Channel plans (--allocate --granularity=channels): widths in multiples of "
               "this; 0 picks hardware-friendly multiples (16, or 8/4/1 for narrow "
               "models; tfprune.structure.hardware_round_to)."),
        define(flags.DEFINE_list, "sweep_sparsities", ["0.3", "0.5", "0.7", "0.9"],
               "Sparsities the --allocate sweep tries per layer."),
        define(flags.DEFINE_integer, "sweep_samples", 512,
               "Samples the --allocate sweep evaluates on."),
        define(flags.DEFINE_list, "skip", None, "Layers to leave dense."),
        define(flags.DEFINE_integer, "epochs", 2, "Fine-tuning epochs."),
        define(flags.DEFINE_integer, "batch_size", 32, "Training batch size."),
        define(flags.DEFINE_float, "learning_rate", 1e-3, "Adam learning rate."),
        define(flags.DEFINE_string, "loss", "auto",
               "A Keras loss name; auto: the model's compiled loss, else sparse categorical "
               "crossentropy (from logits unless the last layer has a softmax)."),
        define(flags.DEFINE_integer, "processes", 1,
               "Fine-tune data-parallel in this many local processes (JAX backend, one CPU "
               "each, jax.distributed on 127.0.0.1): a chief starts them, and restarts all of "
               "them from the last checkpoint when one dies. 1: this process alone."),
        define(flags.DEFINE_integer, "max_restarts", 3,
               "With --processes > 1: restarts of the processes after a death before the "
               "chief gives up."),
        define(flags.DEFINE_integer, "seed", 0,
               "Random seed (shuffling, initializers); each epoch reseeds, so a resumed "
               "run repeats the uninterrupted one."),
    ]


def _fraction(name, value, low_open=True):
    ok = (0 < value < 1) if low_open else (0 <= value < 1)
    if not ok:
        raise UserError(f"--{name} must be in {'(0' if low_open else '[0'}, 1); got {value}.")


def read_plan(path):
    """``{layer: sparsity}`` from a JSON file (a bare mapping or ``{"plan": {...}}``)."""
    _inputs.existing_file(path, "plan", "a JSON file {layer: sparsity}")
    try:
        with open(path) as f:
            plan = json.load(f)
    except (ValueError, OSError) as e:
        raise UserError(f"--plan={path}: not a JSON file ({str(e).splitlines()[0][:120]}); "
                        "write it as {\"layer\": sparsity, ...}.") from None
    if isinstance(plan, dict) and isinstance(plan.get("plan"), dict):
        plan = plan["plan"]
    if not isinstance(plan, dict) or not plan:
        raise UserError(f"--plan={path}: expected a non-empty JSON object "
                        "{\"layer\": sparsity, ...}.")
    for layer, value in plan.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
            raise UserError(f"--plan={path}: layer {layer!r} has sparsity {value!r}; "
                            "each must be a number in [0, 1).")
    return {str(k): float(v) for k, v in plan.items()}


def default_paths():
    """``(summary_json, work_dir)`` with their defaults filled in."""
    stem = os.path.splitext(FLAGS.output)[0]
    return (FLAGS.summary_json or stem + ".summary.json", FLAGS.work_dir or stem + ".work")


def check_flags(argv=()):
    """Everything that can be checked before TensorFlow loads; returns the plan or None."""
    if len(argv) > 1:
        raise UserError(f"unexpected argument(s) {argv[1:]}; every input is a flag "
                        "(e.g. --model=m.keras).")
    _inputs.existing_file(FLAGS.model, "model", "a saved .keras model (--model=model.keras)")
    if bool(FLAGS.data) == bool(FLAGS.dataset):
        raise UserError("pass one of --data (a .npz file with x_train, y_train) or "
                        f"--dataset ({', '.join(DATASETS)}).")
    if FLAGS.data:
        _inputs.existing_file(FLAGS.data, "data", "a .npz file with arrays x_train, y_train")
    if not FLAGS.output:
        raise UserError("--output is required: where to write the pruned model "
                        "(--output=pruned.keras).")
    if not FLAGS.output.endswith(".keras"):
        raise UserError(f"--output={FLAGS.output}: the name must end in .keras.")
    if FLAGS.export and not FLAGS.export.endswith(".tflite"):
        raise UserError(f"--export={FLAGS.export}: the name must end in .tflite.")
    summary, work_dir = default_paths()
    for name, path in (("output", FLAGS.output), ("export", FLAGS.export),
                       ("summary_json", summary), ("work_dir", work_dir)):
        _inputs.writable(path, name)
    if os.path.exists(work_dir) and not os.path.isdir(work_dir):
        raise UserError(f"--work_dir={work_dir} is a file; pass a folder.")
    _fraction("target_sparsity", FLAGS.target_sparsity)
    _fraction("initial_sparsity", FLAGS.initial_sparsity, low_open=False)
    if FLAGS.schedule == "polynomial" and FLAGS.initial_sparsity > FLAGS.target_sparsity:
        raise UserError(f"--initial_sparsity ({FLAGS.initial_sparsity}) is above "
                        f"--target_sparsity ({FLAGS.target_sparsity}).")
    for name, low in (("epochs", 1), ("batch_size", 1), ("begin_step", 0), ("frequency", 0),
                      ("max_samples", 0), ("sweep_samples", 1)):
        if FLAGS[name].value < low:
            raise UserError(f"--{name} must be {low} or more; got {FLAGS[name].value}.")
    if FLAGS.end_step != -1 and FLAGS.end_step <= FLAGS.begin_step:
        raise UserError(f"--end_step ({FLAGS.end_step}) must be after --begin_step "
                        f"({FLAGS.begin_step}), or -1.")
    if not FLAGS.learning_rate > 0:
        raise UserError(f"--learning_rate must be positive; got {FLAGS.learning_rate}.")
    for s in FLAGS.sweep_sparsities:
        try:
            _fraction("sweep_sparsities", float(s))
        except ValueError:
            raise UserError(f"--sweep_sparsities: {s!r} is not a number.") from None
    if FLAGS.target_flops is not None and not FLAGS.allocate:
        raise UserError("--target_flops needs --allocate (it sets the budget of the plan).")
    if FLAGS.target_flops is not None and FLAGS.target_flops <= 0:
        raise UserError(f"--target_flops must be positive; got {FLAGS.target_flops}.")
    if FLAGS.target_latency_ms is not None:
        if not FLAGS.allocate:
            raise UserError("--target_latency_ms needs --allocate (it sets the budget of "
                            "the plan).")
        if not FLAGS.target_latency_ms > 0:
            raise UserError(f"--target_latency_ms must be positive; got "
                            f"{FLAGS.target_latency_ms}.")
        if FLAGS.target_flops is not None:
            raise UserError("pass --target_flops or --target_latency_ms, not both.")
        if FLAGS.granularity.lower() not in CHANNELS:
            raise UserError(f"--target_latency_ms needs --granularity=channels (got "
                            f"{FLAGS.granularity!r}): latency falls with whole channels "
                            "removed, not with masked weights.")
    if FLAGS.latency_threads < 1:
        raise UserError(f"--latency_threads must be 1 or more; got {FLAGS.latency_threads}.")
    if FLAGS.round_to < 0:
        raise UserError(f"--round_to must be 0 (auto) or more; got {FLAGS.round_to}.")
    if FLAGS.latency_cache:
        _inputs.writable(FLAGS.latency_cache, "latency_cache")
    if FLAGS.allocate and FLAGS.plan:
        raise UserError("pass --plan or --allocate, not both.")
    check_processes()
    return read_plan(FLAGS.plan) if FLAGS.plan else None


def check_processes():
    """The checks of ``--processes`` and ``--max_restarts`` (no TensorFlow, no JAX import)."""
    n = FLAGS.processes
    if n < 1:
        raise UserError(f"--processes must be 1 or more; got {n}.")
    if FLAGS.max_restarts < 0:
        raise UserError(f"--max_restarts must be 0 or more; got {FLAGS.max_restarts}.")
    if n == 1:
        return
    for name in ("export", "allocate"):
        if FLAGS[name].value:
            raise UserError(f"--{name} with --processes={n} is not supported yet; run it "
                            "in one process (--processes=1), or export the pruned model "
                            "afterwards with tfprune-export.")
    import importlib.util
    if importlib.util.find_spec("jax") is None:
        raise UserError(f"--processes={n} needs the JAX backend (pip install jax); JAX is "
                        "not installed.")
    if FLAGS.batch_size % n:
        raise UserError(f"--batch_size={FLAGS.batch_size} is the global batch and must be "
                        f"a multiple of --processes={n} (each process feeds an equal part).")


def run_processes():
    """With ``--processes`` > 1: runs the chief (it never loads TensorFlow); returns its
    exit status, else None."""
    if FLAGS.processes <= 1:
        return None
    from tfprune_cli import _supervise
    return _supervise.supervise(PROG, FLAGS.processes, FLAGS.max_restarts,
                                default_paths()[1], define_flags())


def run(argv=None):
    """Console entry point (``tfprune-prune``)."""
    from tfprune_cli import launch
    launch("prune", argv)


if __name__ == "__main__":
    run()
