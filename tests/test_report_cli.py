"""tfprune-report: a real run's files -> one Markdown file and one self-contained HTML page.

A small digits classifier goes through the tools in this process (sweep and
plan, prune, two exports, a side-by-side benchmark), then the report is built
from the folder. The page is checked as text (sections, tables, inline PNGs,
nothing fetched from outside) and, when Chromium is installed, rendered by
headless Chromium: the DOM it builds has the headings and tables, every image
decodes, and the console shows no error.
"""

import base64
import json
import os
import re
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest
from absl import flags

from tfprune.cli import bench as bench_cli
from tfprune.cli import export as export_cli
from tfprune.cli import prune as prune_cli
from tfprune.cli import report as report_cli
from tfprune.cli import sensitivity as sensitivity_cli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SECTIONS = ["Inputs", "Sensitivity", "Allocation", "Pruning", "Exported models",
            "Accuracy, latency and size", "Dense vs pruned"]
PNG = b"\x89PNG\r\n\x1a\n"
pytest.importorskip("matplotlib")


def _run(module, *args):
    """Parses ``args`` into the global absl FLAGS and runs ``module.main`` (in process).

    The tools share flag names (first definition wins), so every run passes the
    shared ones that matter (batch sizes, sample counts) explicitly.
    """
    for m in (sensitivity_cli, prune_cli, export_cli, bench_cli, report_cli):
        m.define_flags()
    flags.FLAGS.unparse_flags()
    flags.FLAGS([module.__name__, *map(str, args)])
    module.main([])


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """The files of a whole run: sweep, plan, pruning summary, two exports, a benchmark."""
    import keras

    from tfprune import datasets
    run = tmp_path_factory.mktemp("run")
    (x, y), (xt, yt) = datasets.digits()
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input(x.shape[1:]), keras.layers.Flatten(),
                              keras.layers.Dense(32, activation="relu", name="fc1"),
                              keras.layers.Dense(32, activation="relu", name="fc2"),
                              keras.layers.Dense(10, name="logits")])
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    model.fit(x, y, epochs=8, batch_size=32, verbose=0)
    model.save(run / "dense.keras")
    np.savez(run / "train.npz", x_train=x, y_train=y, x_test=xt, y_test=yt)
    np.savez(run / "test.npz", x=xt, y=yt)
    _run(sensitivity_cli, f"--model={run / 'dense.keras'}", f"--data={run / 'test.npz'}",
         "--sparsities=0.5,0.8,0.95", f"--output={run / 'sweep.jsonl'}", "--batch_size=256",
         "--max_samples=0", "--target_sparsity=0.7", f"--plan={run / 'plan.json'}")
    _run(prune_cli, f"--model={run / 'dense.keras'}", f"--data={run / 'train.npz'}",
         f"--plan={run / 'plan.json'}", f"--output={run / 'pruned.keras'}", "--strip",
         "--epochs=2", "--batch_size=32", "--max_samples=0", "--skip=logits",
         "--target_sparsity=0.7")
    for name in ("dense", "pruned"):
        _run(export_cli, f"--model={run / (name + '.keras')}", f"--output={run / name}.tflite",
             "--sparse=none", "--batch_size=1")
    _run(bench_cli, f"--model={run / 'pruned.tflite'}", f"--compare_to={run / 'dense.tflite'}",
         f"--data={run / 'test.npz'}", "--runs=20", "--warmup=2", f"--json={run / 'bench.json'}")
    _run(report_cli, f"--run_dir={run}")
    return run


def _images(page):
    return re.findall(r"<img\b[^>]*>", page)


def test_run_files_are_recognised_and_every_section_is_filled(run_dir):
    art = report_cli._report_inputs.gather(run_dir)
    assert art.sweep is not None and set(art.plan) == {"fc1", "fc2", "logits"}
    assert art.summary["accuracy_after"] is not None
    assert sorted(os.path.basename(p) for p, _ in art.exports) == [
        "dense.export.json", "pruned.export.json"]
    assert [os.path.basename(p) for p, _ in art.bench] == ["bench.json"]
    page = (run_dir / "report.html").read_text()
    for title in SECTIONS:
        assert f"<h2>{title}</h2>" in page.replace("&amp;", "&"), title
    assert 'class="missing"' not in page  # every piece was provided
    assert len(_images(page)) == 3        # sensitivity, sparsity bars, trade-off
    md = (run_dir / "report.md").read_text()
    for title in SECTIONS:
        assert f"## {title}" in md
    links = re.findall(r"!\[[^]]*\]\(([^)]+)\)", md)
    assert len(links) == 3 and all((run_dir / link).read_bytes().startswith(PNG)
                                   for link in links)
    # The dense-vs-pruned table shows the realised numbers of this run.
    summary = json.loads((run_dir / "pruned.summary.json").read_text())
    assert f"{summary['accuracy_after']:.4f}" in md
    bench = json.loads((run_dir / "bench.json").read_text())
    assert f"{bench['latency_ratio']:.2f}x" in md and "dense.tflite" in md


def test_page_is_self_contained(run_dir):
    page = (run_dir / "report.html").read_text()
    assert "<script" not in page.lower() and not re.search(r"(?:https?:)?//[\w.-]+\.\w", page)
    assert not re.search(r"""(?:src|href)=["'](?!data:|#)""", page)
    for tag in _images(page):
        src = re.search(r'src="data:image/png;base64,([^"]+)"', tag).group(1)
        assert base64.b64decode(src, validate=True).startswith(PNG)


def test_benchmark_of_both_resolvers(run_dir, tmp_path):
    """tfprune-bench --resolver=both writes one result per resolver: one row each."""
    _run(bench_cli, f"--model={run_dir / 'pruned.tflite'}",
         f"--compare_to={run_dir / 'dense.tflite'}", f"--data={run_dir / 'test.npz'}",
         "--runs=10", "--warmup=1", "--resolver=both", f"--json={tmp_path / 'both.json'}")
    md = report_cli.build(bench=[str(tmp_path / "both.json")]).to_markdown()
    for resolver in ("default", "builtin"):
        assert f"| pruned.tflite ({resolver}) | dense.tflite ({resolver}) |" in md, md


def test_missing_pieces_are_named(tmp_path):
    (tmp_path / "plan.json").write_text(json.dumps({"fc1": 0.5, "fc2": 0.75}))
    (tmp_path / "notes.json").write_text(json.dumps({"hello": "world"}))
    doc = report_cli.build(run_dir=str(tmp_path))
    md = doc.to_markdown()
    for words in ("No sensitivity sweep was provided", "No pruning summary was provided",
                  "No export report was provided", "No benchmark was provided",
                  "notes.json: skipped"):
        assert words in md, words
    assert "| fc2 | 0.75 |" in md
    assert [name for name, _ in doc.figures()] == ["sparsity"]   # the plan alone, as bars


def test_named_file_of_the_wrong_kind_is_refused(tmp_path):
    (tmp_path / "plan.json").write_text(json.dumps({"fc1": 0.5}))
    with pytest.raises(SystemExit, match=r"tfprune-report: error: --sweep=.*plan.json: "
                                         r"expected a sweep file, found a plan file"):
        _run(report_cli, f"--sweep={tmp_path / 'plan.json'}",
             f"--output={tmp_path / 'r.html'}")


def test_bad_flags_answer_before_tensorflow_loads(tmp_path):
    code = "import sys; from tfprune_cli.report import run; sys.argv[0] = 'tfprune-report'; run()"
    env = dict(os.environ, PYTHONPATH=ROOT)
    for args, words in (([], "nothing to report"),
                        ([f"--run_dir={tmp_path / 'nope'}"], "no such folder"),
                        ([f"--run_dir={tmp_path}", "--output=r.txt"], "must end in .html")):
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True,
                              text=True, env=env, cwd=ROOT, timeout=120)
        assert proc.returncode == 1
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("tfprune-report: error: ")
        assert words in lines[0]
        assert time.perf_counter() - start < 5.0   # generous: a loaded machine; ~0.2 s idle


# -- in a real browser ------------------------------------------------------------------

def _chromium():
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    return None


def _browser(*args, timeout=120):
    exe = _chromium()
    if exe is None:
        pytest.skip("Chromium is not installed (Debian: apt-get install chromium; "
                    "`make test` installs it when run as root)")
    cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
           "--no-first-run", "--disable-extensions", "--allow-file-access-from-files",
           "--enable-logging=stderr", "--v=0", *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def _console_errors(stderr):
    """Console messages of the page in Chromium's log (``...:INFO:CONSOLE(1)] "..."``).

    Chromium logs every console message at INFO whatever its level, so any
    console line counts: the report runs no script, so it should log none.
    """
    return [line for line in stderr.splitlines() if ":CONSOLE" in line or "Uncaught" in line]


# Appended to a test copy of the page (the report itself has no script): after load,
# the body records how many images Chromium decoded, and a broken one is logged.
_PROBE = """<script>window.addEventListener("load", () => {
  const imgs = [...document.images];
  const ok = imgs.filter(i => i.complete && i.naturalWidth > 0);
  imgs.filter(i => !ok.includes(i)).forEach(i => console.error("broken image " + i.alt));
  document.body.setAttribute("data-decoded", ok.length + "/" + imgs.length);
  document.body.setAttribute("data-widths", ok.map(i => i.naturalWidth).join(","));
});</script>"""


def test_console_error_detection_works(tmp_path):
    """The console check below would see an error: a page that logs one is caught."""
    probe = tmp_path / "probe.html"
    probe.write_text("<html><body><script>console.error('probe-error');</script></body></html>")
    proc = _browser("--dump-dom", probe.as_uri())
    assert any("probe-error" in line for line in _console_errors(proc.stderr)), proc.stderr[-2000:]


@pytest.mark.slow
def test_chromium_renders_the_page(run_dir, tmp_path):
    page = run_dir / "report.html"
    proc = _browser("--dump-dom", page.as_uri())
    assert proc.returncode == 0, proc.stderr[-2000:]
    dom = proc.stdout.replace("&amp;", "&")
    for title in SECTIONS:
        assert f"<h2>{title}</h2>" in dom, title
    assert dom.count("<table>") >= 7 and "<td>fc1</td>" in dom
    assert len(_images(dom)) == 3
    assert _console_errors(proc.stderr) == [], _console_errors(proc.stderr)
    # Every image decodes (the test copy's probe counts them).
    probed = tmp_path / "probed.html"
    probed.write_text(page.read_text().replace("</body>", _PROBE + "</body>"))
    proc = _browser("--virtual-time-budget=5000", "--dump-dom", probed.as_uri())
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert 'data-decoded="3/3"' in proc.stdout, proc.stdout[:300]
    widths = re.search(r'data-widths="([\d,]+)"', proc.stdout).group(1).split(",")
    assert all(int(w) > 300 for w in widths)
    assert _console_errors(proc.stderr) == [], _console_errors(proc.stderr)
    # And the page as a picture: not blank.
    shot = tmp_path / "shot.png"
    proc = _browser(f"--screenshot={shot}", "--window-size=1200,1600", page.as_uri())
    assert proc.returncode == 0 and shot.read_bytes().startswith(PNG), proc.stderr[-2000:]
    from matplotlib import image
    pixels = image.imread(shot)[..., :3]
    assert pixels.shape[:2] == (1600, 1200) and (pixels < 0.9).mean() > 0.01
