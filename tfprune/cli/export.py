"""``tfprune-export``: a ``.keras`` model to ``.tflite``, with an inspect report.

Example::

    tfprune-export --model pruned.keras --output model.tflite --sparse=auto \\
        --quantize=int8 --representative_data=calib.npy --json=report.json
"""

import sys

from absl import app, flags

from tfprune.cli import write_json

FLAGS = flags.FLAGS


def _define(kind, name, *args, **kwargs):
    if name not in FLAGS:  # both CLIs may live in one process (tests); same meanings
        kind(name, *args, **kwargs)


def define_flags():
    """Defines this app's flags (at run time, so importing the module is side-effect free)."""
    _define(flags.DEFINE_string, "model", None, "Path to a .keras model (pruned or stripped).")
    _define(flags.DEFINE_string, "output", None, "Where to write the .tflite file.")
    _define(flags.DEFINE_enum, "sparse",
            "auto", ["auto", "none", "force"], "Sparse encoding mode.")
    _define(flags.DEFINE_enum, "quantize",
            "none", ["none", "dynamic", "float16", "int8"], "Quantization.")
    _define(flags.DEFINE_string, "representative_data", None,
            ".npy file (or .npz with array 'x') of preprocessed calibration inputs.")
    _define(flags.DEFINE_bool, "int8_io", False, "int8 inputs/outputs (with --quantize=int8).")
    _define(flags.DEFINE_integer, "batch_size", 1, "Static batch size of the signature.")
    _define(flags.DEFINE_enum, "target", "cpu", ["cpu", "edgetpu"], "Target: cpu or edgetpu.")
    _define(flags.DEFINE_string, "json",
            None, "Write the inspect report as JSON here ('-' for stdout).")


def load_array(path, key="x"):
    """An array from a .npy file or the ``key`` array of a .npz file."""
    import numpy as np
    data = np.load(path)
    if hasattr(data, "files"):
        if key not in data.files:
            raise ValueError(f"{path}: no array {key!r} (has {data.files})")
        return data[key]
    return data


def main(argv):
    """Runs the app; bad input exits with a one-line error instead of a traceback."""
    try:
        _main(argv)
    except (ValueError, TypeError, FileNotFoundError) as e:
        sys.exit(f"tfprune-export: error: {e}")


def _main(argv):
    del argv
    if not FLAGS.model:
        raise app.UsageError("--model is required")
    if not FLAGS.output:
        raise app.UsageError("--output is required")
    import tfprune.export as export
    rep = load_array(FLAGS.representative_data) if FLAGS.representative_data else None
    export.to_tflite(FLAGS.model, sparse=FLAGS.sparse,
                     quantize=None if FLAGS.quantize == "none" else FLAGS.quantize,
                     representative_data=rep, int8_io=FLAGS.int8_io,
                     batch_size=FLAGS.batch_size,
                     target=None if FLAGS.target == "cpu" else FLAGS.target,
                     output=FLAGS.output)
    report = export.inspect(FLAGS.output)
    print(report.to_markdown())
    if FLAGS.json:
        write_json(report.to_dict(), FLAGS.json)


def run():
    """Console entry point."""
    define_flags()
    app.run(main)


if __name__ == "__main__":
    run()
