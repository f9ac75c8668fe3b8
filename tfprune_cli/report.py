"""tfprune-report: one Markdown file and one self-contained HTML page about a pruning run.

Example:

    tfprune-report --run_dir=run/ --output=run/report.html

gathers what the other tools wrote (found in --run_dir by their content, or
named by flags): the sensitivity sweep (tfprune-sensitivity --output=sweep.jsonl),
the allocation (--plan=plan.json), the pruning summary (tfprune-prune writes
<output>.summary.json), export reports (tfprune-export writes
<output>.export.json) and benchmarks (tfprune-bench --json=bench.json). The
page has sensitivity curves and a layer x sparsity heat map, per-layer
sparsity bars, accuracy against latency and size, and a dense-vs-pruned
table; a piece that was not provided is skipped with a line saying so.
Figures are inline PNGs (matplotlib): the page needs no network and no
JavaScript. The Markdown file links the same PNGs, saved beside it.
"""

import os

from absl import flags

from tfprune_cli import _inputs
from tfprune_cli._flags import UserError, define

PROG = "tfprune-report"
FLAGS = flags.FLAGS
INPUT_FLAGS = ("sweep", "plan", "summary", "exports", "bench")


def define_flags():
    """Defines this app's flags (at run time, so importing the module is side-effect free).

    Returns their names.
    """
    return [
        define(flags.DEFINE_string, "run_dir", None,
               "Folder to search (two levels deep) for the JSON/JSONL files the other "
               "tools write; each file is recognised by its content, not its name."),
        define(flags.DEFINE_string, "sweep", None,
               "Sensitivity sweep: the JSONL of tfprune-sensitivity --output (or its --json)."),
        define(flags.DEFINE_string, "plan", None,
               "Allocation JSON {layer: sparsity} (tfprune-sensitivity --plan)."),
        define(flags.DEFINE_string, "summary", None,
               "Pruning-run summary JSON (tfprune-prune's <output>.summary.json)."),
        define(flags.DEFINE_list, "exports", None,
               "Export reports (tfprune-export's <output>.export.json or --json), "
               "comma-separated."),
        define(flags.DEFINE_list, "bench", None,
               "Benchmark results (tfprune-bench --json), comma-separated."),
        define(flags.DEFINE_string, "output", None,
               "Where to write the HTML page (default: <run_dir>/report.html)."),
        define(flags.DEFINE_string, "markdown", None,
               "Where to write the Markdown file (default: the --output path with .md); "
               "its figures go to <name>_figures/ beside it."),
        define(flags.DEFINE_string, "title", "tfprune report", "Title of the report."),
    ]


def default_paths():
    """``(html, markdown)`` with their defaults filled in."""
    html = FLAGS.output or os.path.join(FLAGS.run_dir or ".", "report.html")
    return html, FLAGS.markdown or os.path.splitext(html)[0] + ".md"


def check_flags(argv=()):
    """Everything that can be checked before the work starts."""
    if len(argv) > 1:
        raise UserError(f"unexpected argument(s) {argv[1:]}; every input is a flag "
                        "(e.g. --run_dir=run/).")
    given = [n for n in INPUT_FLAGS if FLAGS[n].value]
    if not FLAGS.run_dir and not given:
        raise UserError("nothing to report: pass --run_dir (a folder the other tools wrote "
                        "into) or at least one of " + ", ".join(f"--{n}" for n in INPUT_FLAGS)
                        + ".")
    if FLAGS.run_dir and not os.path.isdir(FLAGS.run_dir):
        raise UserError(f"--run_dir={FLAGS.run_dir}: no such folder; pass the folder the "
                        "other tools wrote into.")
    for name in given:
        value = FLAGS[name].value
        for path in value if isinstance(value, list) else [value]:
            _inputs.existing_file(path, name, "a JSON/JSONL file written by a tfprune tool")
    html, md = default_paths()
    if not html.endswith((".html", ".htm")):
        raise UserError(f"--output={html}: the name must end in .html.")
    if md == html:
        raise UserError(f"--markdown={md} is the HTML page's path; pass a .md name.")
    _inputs.writable(html, "output")
    _inputs.writable(md, "markdown")


def run(argv=None):
    """Console entry point (``tfprune-report``)."""
    from tfprune_cli import launch
    launch("report", argv)


if __name__ == "__main__":
    run()
