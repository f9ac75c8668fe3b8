"""tfprune-report: one Markdown file and one self-contained HTML page about a pruning run.

The flags and their checks live in ``tfprune_cli.report`` (the console
script's fast path); this module builds the report.

>>> import json, os, tempfile
>>> run = tempfile.mkdtemp()
>>> with open(os.path.join(run, "plan.json"), "w") as f:
...     json.dump({"conv1": 0.5, "fc1": 0.9}, f)
>>> doc = build(run_dir=run)
>>> [s.title for s in doc.sections][:3]
['Inputs', 'Sensitivity', 'Allocation']
"""

import os
import sys

from absl import flags

from tfprune.cli import _flags, _report_figures, _report_html, _report_inputs
from tfprune_cli import report as spec
from tfprune_cli.report import PROG, check_flags, default_paths, define_flags

FLAGS = flags.FLAGS
__all__ = ["PROG", "build", "define_flags", "check_flags", "main", "run"]
NO_MATPLOTLIB = "Figure left out: matplotlib is not installed (pip install 'tfprune[plots]')."


def _f(value, fmt="{:.4f}"):
    return "" if value is None else fmt.format(value)


def _kib(n):
    return "" if n is None else f"{n / 1024:,.1f} KiB"


def _ratio(a, b):
    return "" if a is None or b in (None, 0) else f"{a / b:.2f}x"


def _name(path):
    return os.path.basename(str(path)) if path else ""


def _figure(section, name, png, caption):
    if png is None:
        section.missing(NO_MATPLOTLIB)
    else:
        section.figure(name, png, caption)


def _inputs_section(doc, art):
    s = doc.section("Inputs")
    rows = [[kind, _name(getattr(art, kind + "_path"))] for kind in ("sweep", "plan", "summary")
            if getattr(art, kind) is not None]
    rows += [[kind, _name(p)] for kind in ("exports", "bench") for p, _ in getattr(art, kind)]
    if rows:
        s.table(["piece", "file"], rows)
    for note in art.notes:
        s.text(note)


def _sensitivity_section(doc, art):
    s = doc.section("Sensitivity")
    rep = art.sweep
    if rep is None:
        s.missing("No sensitivity sweep was provided (tfprune-sensitivity --output=sweep.jsonl, "
                  "or --sweep=FILE here): no curves or heat map.")
        return
    meta = rep.meta
    s.text(f"Each layer pruned alone ({meta.get('criterion')}, {meta.get('granularity')}) and "
           f"evaluated: baseline {meta.get('metric')} {_f(rep.baseline)}; `drop` is how much "
           f"worse it got. {len(rep.layers)} units x {len(rep.sparsities)} sparsities.")
    _figure(s, "sensitivity", _report_figures.sensitivity(rep),
            "Drop per layer against its sparsity (left); layer x sparsity heat map (right).")
    sp = rep.sparsities
    rows = []
    for layer in rep.layers:
        by = {r["sparsity"]: r for r in rep.table if r["layer"] == layer}
        rows.append([layer, str(next(iter(by.values()))["params"])]
                    + [_f(by[x]["drop"]) if x in by else "" for x in sp])
    s.table(["layer", "params"] + [f"drop @{x:g}" for x in sp], rows)


def _allocation_section(doc, art):
    s = doc.section("Allocation")
    plan = art.plan or (art.summary or {}).get("plan")
    if not plan:
        s.missing("No allocation plan was provided (tfprune-sensitivity --target_sparsity=0.8 "
                  "--plan=plan.json, or --plan=FILE here).")
        return
    if art.plan is None:
        s.text("The plan recorded in the pruning summary.")
    rep = art.sweep
    params = {r["layer"]: r["params"] for r in rep.table} if rep is not None else {}
    rows = []
    for layer, target in plan.items():
        drop = ""
        if rep is not None and layer in rep.layers:
            import numpy as np
            xs, ys = rep.curve(layer)
            drop = _f(float(np.interp(target, xs, ys)))
        rows.append([layer, _f(target, "{:.2f}"), str(params.get(layer, "")), drop])
    s.table(["layer", "planned sparsity", "params", "drop alone (interpolated)"], rows)
    if rep is not None and all(layer in rep.layers for layer in plan):
        from tfprune import sensitivity
        overall = ""
        if rep.meta.get("granularity") == "unstructured":
            # Channel plans remove the next layer's inputs too: their parameter counts are
            # in the pruning summary, not a weighted mean of these rows.
            total = sum(params[k] for k in plan)
            overall = (f"Overall sparsity of these layers "
                       f"{sum(params[k] * v for k, v in plan.items()) / max(total, 1):.3f}; ")
        s.text(f"{overall}predicted drop {sensitivity.predicted_drop(rep, plan):.4f} "
               "(sum of single-layer drops, the sweep's additive model).")
    elif rep is None:
        s.missing("No sweep was provided, so the plan's predicted drop is not shown.")


def _pruning_section(doc, art):
    s = doc.section("Pruning")
    summ = art.summary
    plan = art.plan or (summ or {}).get("plan")
    if summ is None:
        s.missing("No pruning summary was provided (tfprune-prune writes "
                  "<output>.summary.json; or --summary=FILE here).")
        if plan:
            _figure(s, "sparsity", _report_figures.sparsity_bars(None, plan),
                    "Planned sparsity per layer (no pruning run to compare with).")
        return
    sched = summ.get("schedule") or {}
    s.text(f"`{_name(summ.get('model'))}` -> `{_name(summ.get('output'))}`: "
           f"{sched.get('name', '?')} schedule, criterion {summ.get('criterion')}, granularity "
           f"{summ.get('granularity')}, {summ.get('epochs')} epochs ({summ.get('steps')} steps)"
           + ("; stripped" if summ.get("stripped") else "")
           + ("; channels that were all zero removed (shrink)" if summ.get("shrunk") else "")
           + f". Overall mask sparsity {_f(summ.get('sparsity'), '{:.3f}')}.")
    layers = summ.get("layers") or {}
    _figure(s, "sparsity", _report_figures.sparsity_bars(layers, plan),
            "Sparsity reached per weight (bars) and the planned target (ticks).")
    rows = [[w, _f((plan or {}).get(w.split("/")[0]), "{:.2f}"), _f(v, "{:.3f}")]
            for w, v in layers.items()]
    s.table(["weight", "planned", "achieved"], rows)
    hist = summ.get("history") or []
    if hist:
        s.table(["epoch", "loss", "accuracy", "mask sparsity"],
                [[str(h.get("epoch", i + 1)), _f(h.get("loss")), _f(h.get("accuracy")),
                  _f(h.get("mask_sparsity", h.get("sparsity")), "{:.3f}")]
                 for i, h in enumerate(hist)])


def _exports_section(doc, art):
    s = doc.section("Exported models")
    if not art.exports:
        s.missing("No export report was provided (tfprune-export writes <output>.export.json; "
                  "or --exports=FILE here).")
        return
    rows, decisions = [], []
    for path, rep in art.exports:
        src = rep.get("source") or {}
        sparse_ops = sum(1 for op in rep.get("ops", []) if (op.get("weight") or {}).get("sparse"))
        rows.append([_name(src.get("output") or path), src.get("quantize", ""),
                     src.get("sparse", ""), _kib(rep.get("size")), _kib(rep.get("gzip_size")),
                     str(len(rep.get("ops", []))), str(sparse_ops)])
        for d in rep.get("sparse_decisions") or []:
            decisions.append([_name(src.get("output") or path), str(d.get("layer", "")),
                              _f(d.get("zeros"), "{:.0%}"), str(d.get("decision", "")),
                              str(d.get("reason", ""))])
    s.table(["file", "quantize", "sparse", "size", "gzip", "ops", "sparse weights"], rows)
    if decisions:
        s.text("Per-layer encodings chosen by `sparse=\"auto\"` (a layer stays dense unless "
               "its sparse kernel was measured faster here):")
        s.table(["file", "layer", "zeros", "decision", "reason"], decisions)


def _bench_rows(art):
    """``[(path, label, result, compare_label)]``: every benchmarked model, resolver by resolver."""
    out = []
    for path, res in art.bench:
        per = res.items() if "p50_ms" not in res else [(None, res)]
        for resolver, r in per:
            label = _name(r.get("model_path") or res.get("model_path") or path)
            other = r.get("compare")
            other_label = _name(r.get("compare_path") or res.get("compare_path")) or "compare"
            suffix = f" ({resolver})" if resolver else ""
            out.append((label + suffix, r, other_label + suffix if other else None, other))
    return out


def _tradeoff_section(doc, art):
    s = doc.section("Accuracy, latency and size")
    if not art.bench:
        s.missing("No benchmark was provided (tfprune-bench --json=bench.json, or "
                  "--bench=FILE here): no latency figures.")
        return
    points, rows, seen = [], [], set()
    errors = any(res and res.get("error") for b in _bench_rows(art) for res in (b[1], b[3]))
    for label, r, other_label, other in _bench_rows(art):
        for lab, res in ((label, r), (other_label, other)):
            if res is None or lab in seen:
                continue
            seen.add(lab)
            points.append({"label": lab, "accuracy": res.get("accuracy"),
                           "p50_ms": res.get("p50_ms"), "size": res.get("size")})
            rows.append([lab, _kib(res.get("size")), _kib(res.get("gzip_size")),
                         _f(res.get("p50_ms"), "{:.4g}"), _f(res.get("p90_ms"), "{:.4g}"),
                         _f(res.get("accuracy")), str(res.get("threads", ""))]
                        + ([res.get("error") or ""] if errors else []))
    if any(p["accuracy"] is not None for p in points):
        _figure(s, "tradeoff", _report_figures.tradeoff(points),
                "Accuracy against p50 latency (left) and file size (right), LiteRT interpreter.")
    else:
        s.missing("The benchmarks have no accuracy (tfprune-bench without --data with labels): "
                  "no accuracy figure.")
    s.table(["model", "size", "gzip", "p50 ms", "p90 ms", "accuracy", "threads"]
            + (["error"] if errors else []), rows)
    s.text("Latencies are medians of interleaved rounds on the machine that ran tfprune-bench; "
           "compare them as ratios measured side by side, not as absolute figures.")


def _dense_vs_pruned_section(doc, art):
    s = doc.section("Dense vs pruned")
    summ = art.summary
    if summ is None:
        s.missing("No pruning summary was provided: no Keras-level comparison.")
    else:
        before, after = summ.get("before") or {}, summ.get("after") or {}
        rows = [["accuracy (Keras, " + str(summ.get("eval_data", "eval")) + ")",
                 _f(summ.get("accuracy_before")), _f(summ.get("accuracy_after")), ""],
                ["parameters", f"{before.get('params', 0):,}", f"{after.get('params', 0):,}",
                 _ratio(after.get("params"), before.get("params"))]]
        if after.get("params_nonzero") is not None and before.get("params_nonzero"):
            rows.append(["nonzero parameters", f"{before['params_nonzero']:,}",
                         f"{after['params_nonzero']:,}",
                         _ratio(after["params_nonzero"], before["params_nonzero"])])
        if before.get("flops") and after.get("flops"):
            rows.append(["multiply-adds per sample", f"{before['flops']:,}",
                         f"{after['flops']:,}", _ratio(after["flops"], before["flops"])])
        s.table(["", "dense", "pruned", "pruned / dense"], rows)
    pairs = [b for b in _bench_rows(art) if b[3] is not None]
    if not pairs:
        s.missing("No side-by-side benchmark (tfprune-bench --model=pruned.tflite "
                  "--compare_to=dense.tflite --json=...) was provided: no .tflite comparison.")
        return
    rows = []
    for label, r, other_label, other in pairs:
        rows.append([label, other_label, _f(other.get("accuracy")), _f(r.get("accuracy")),
                     _ratio(r.get("size"), other.get("size")),
                     _ratio(r.get("gzip_size"), other.get("gzip_size")),
                     _f(r.get("latency_ratio"), "{:.2f}x")])
    s.table(["pruned (--model)", "dense (--compare_to)", "accuracy dense", "accuracy pruned",
             "size ratio", "gzip ratio", "latency ratio"], rows)


def build(run_dir=None, title="tfprune report", **given):
    """The report :class:`~tfprune.cli._report_html.Document` of a run.

    Args:
      run_dir: folder searched for the tools' JSON/JSONL files.
      title: the page title.
      **given: files by kind: ``sweep``, ``plan``, ``summary`` (paths) and
        ``exports``, ``bench`` (lists of paths); they take precedence over
        files of the same kind found in ``run_dir``.
    """
    art = _report_inputs.gather(run_dir, **given)
    doc = _report_html.Document(
        title, "Made by tfprune-report from the files the tfprune tools wrote"
        + (f" in `{run_dir}`" if run_dir else "") + ".")
    for add in (_inputs_section, _sensitivity_section, _allocation_section, _pruning_section,
                _exports_section, _tradeoff_section, _dense_vs_pruned_section):
        add(doc, art)
    return doc


def main(argv):
    """Runs the app; bad input exits with one line (``tfprune-report: error: ...``)."""
    return _flags.guard(PROG, _main, argv)


def _main(argv):
    check_flags(argv)
    html_path, md_path = default_paths()
    given = {k: FLAGS[k].value for k in spec.INPUT_FLAGS if FLAGS[k].value}
    doc = build(FLAGS.run_dir, title=FLAGS.title, **given)
    doc.write(html_path, md_path)
    missing = sum(1 for s in doc.sections for b in s.blocks if b[0] == "missing")
    print(f"report: {html_path} (self-contained HTML) and {md_path}; "
          f"{len(doc.figures())} figures, {missing} parts not provided", file=sys.stderr)
    print(os.path.abspath(html_path))


def run(argv=None):
    """Entry point of ``python -m tfprune.cli.report`` (the console script is faster)."""
    _flags.run(PROG, spec.__doc__, define_flags(), main, argv)


if __name__ == "__main__":
    run()
