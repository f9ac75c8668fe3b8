"""Time of one mask update, this tree against another checkout, interleaved in one process.

    PYTHONPATH=. python tools/bench_mask_update_time.py --before ../old-checkout --repeats 7
    PYTHONPATH=. python tools/bench_mask_update_time.py --before ../old-checkout \
        --cases unstructured-layer,nm-layer --repeats 9

The other checkout's ``tfprune`` package is copied to a temporary directory
and renamed (``tfprune_before``, its imports and Keras registrations
rewritten), so both versions run in the same process on the same weights:
one ``Dense(3164)`` on 3164 inputs (1.0e7 parameters, normal weights). Each
repeat restores the dense weights (untimed), then times one mask update
(magnitude, 50%) with each version, alternating which goes first; reported
are the medians and whether the two versions' masks are identical. Scope
``global`` runs ``PruningCallback``'s step-0 update (one threshold over
every pruned weight).
"""

import argparse
import os
import re
import shutil
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

CASES = ("unstructured-layer,unstructured-global,channels-layer,channels-global,"
         "block-layer,block-global,nm-layer")


def import_before(checkout):
    """The other checkout's tfprune, importable as ``tfprune_before``."""
    root = tempfile.mkdtemp(prefix="tfprune_before_")
    target = os.path.join(root, "tfprune_before")
    shutil.copytree(os.path.join(checkout, "tfprune"), target)
    for folder, _, files in os.walk(target):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                with open(path) as f:
                    text = f.read()
                text = re.sub(r"\btfprune(\.|_cli| import)", r"tfprune_before\1", text)
                text = text.replace('package="tfprune"', 'package="tfprune_before"')
                with open(path, "w") as f:
                    f.write(text)
    sys.path.insert(0, root)
    import tfprune_before
    return tfprune_before


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--before", required=True, help="another checkout of tfprune")
    p.add_argument("--cases", default=CASES, help="granularity-scope pairs, comma-separated")
    p.add_argument("--repeats", type=int, default=7)
    args = p.parse_args()
    import keras
    import numpy as np

    import tfprune as after
    before = import_before(args.before)
    libs = {"before": before, "after": after}
    d = 3164
    value = np.random.default_rng(0).normal(size=(d, d)).astype(np.float32)
    print(f"numpy {np.__version__}, keras {keras.__version__}; "
          "load average {:.1f} {:.1f} {:.1f}".format(*os.getloadavg()))
    print("| granularity | scope | before s | after s | after / before | same masks |")
    print("|---|---|---|---|---|---|")
    for case in args.cases.split(","):
        name, scope = case.split("-")
        setups = {}
        for label, lib in libs.items():
            gran = {"unstructured": lib.Unstructured(), "channels": lib.Channels(),
                    "block": lib.Block(1, 4), "nm": lib.NofM(2, 4)}[name]
            model = keras.Sequential([keras.Input((d,)), keras.layers.Dense(d, use_bias=False)])
            pruned = lib.prune(model, schedule=lib.OneShot(0.5, step=0), granularity=gran,
                               scope=scope)
            wrapper = [w for w in pruned.layers if isinstance(w, lib.PruneWrapper)][0]
            setups[label] = (lib, pruned, wrapper)
        times, masks = {"before": [], "after": []}, {}
        for r in range(args.repeats):
            for label in ("before", "after") if r % 2 == 0 else ("after", "before"):
                lib, pruned, wrapper = setups[label]
                wrapper.layer.kernel.assign(value)
                wrapper.pruning_step.assign(-1)   # the step-0 update is due again
                start = time.perf_counter()
                if scope == "global":
                    callback = lib.PruningCallback()
                    callback.set_model(pruned)
                    callback.on_train_batch_begin(0)
                else:
                    wrapper.update_masks(step=0)
                times[label].append(time.perf_counter() - start)
                masks[label] = keras.ops.convert_to_numpy(wrapper.masks[0])
        b, a = float(np.median(times["before"])), float(np.median(times["after"]))
        same = "yes" if np.array_equal(masks["before"], masks["after"]) else "NO"
        print(f"| {name} | {scope} | {b:.3f} | {a:.3f} | {a / b:.2f} | {same} |", flush=True)
    print("load average at the end {:.1f} {:.1f} {:.1f}".format(*os.getloadavg()))


if __name__ == "__main__":
    main()
