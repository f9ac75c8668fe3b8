"""The chief of ``tfprune-prune --processes=N``: starts N workers and restarts them when one dies.

It imports neither TensorFlow nor Keras: it only spawns and watches. Each
worker runs ``tfprune.cli._processes`` with the command's flags, its
process id and the coordinator address (127.0.0.1 and a free port), on the
JAX backend with one CPU device; together they fine-tune data-parallel and
process 0 checkpoints into the work folder.

When a worker exits non-zero or is killed by a signal, the chief kills the
others, prints one line on stderr (which process, its pid, the exit code or
signal, the last checkpoint in the work folder, ``restart i of K``) and
starts all N again: they resume from that checkpoint. Exit status 3 from a
worker means bad input (a retry would fail the same way): the chief stops
with it. After ``max_restarts`` restarts it gives up with a message and exit
status 1. ``processes.json`` in the work folder records every attempt (pids,
exit codes, the death).
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time

from absl import flags

FLAGS = flags.FLAGS
BAD_INPUT = 3  # a worker's exit status for input it refuses
PEER_LOST = 4  # a worker's exit status when a collective lost a peer (a consequence, not a cause)
# A worker's command: ``import tfprune`` (TensorFlow, Keras) with its C++ log lines kept
# off the terminal, then the worker module (tfprune.cli._processes).
WORKER = ("from tfprune_cli._flags import quiet_logs, quiet_stderr\n"
          "quiet_logs()\n"
          "with quiet_stderr():\n"
          "    from tfprune.cli import _processes\n"
          "_processes.run()")
RECORD = "processes.json"
POLL = 0.1  # seconds between looks at the workers
GRACE = 10  # seconds the others may take to exit after one refused its input


def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on (now)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def describe(code):
    """``exit code 1`` or ``signal SIGKILL`` for a ``Popen.returncode``."""
    if code is not None and code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"exit code {code}" + (" (lost a peer)" if code == PEER_LOST else "")


def last_checkpoint(work_dir):
    """``(epoch, file)`` of the newest checkpoint named by the work folder's state.json."""
    try:
        with open(os.path.join(work_dir, "state.json")) as f:
            state = json.load(f)
        return int(state.get("epoch", 0)), state.get("checkpoint")
    except (OSError, ValueError, TypeError, AttributeError):
        return 0, None


def checkpoint_text(work_dir):
    epoch, name = last_checkpoint(work_dir)
    if not name:
        return "no checkpoint yet (restarting from the start)"
    return f"last checkpoint epoch {epoch} ({os.path.join(work_dir, name)})"


def worker_flags(names):
    """The command's flags as given (``--name=value``), for the workers' command lines."""
    out = [FLAGS[n].serialize() for n in names if FLAGS[n].present]
    if "verbosity" in FLAGS and FLAGS["verbosity"].present:
        out.append(FLAGS["verbosity"].serialize())
    return out


def worker_env():
    """The environment of a worker: JAX, one CPU device, this package importable."""
    env = dict(os.environ, KERAS_BACKEND="jax", JAX_PLATFORMS="cpu")
    xla = [f for f in env.get("XLA_FLAGS", "").split()
           if not f.startswith("--xla_force_host_platform_device_count")]
    if xla:
        env["XLA_FLAGS"] = " ".join(xla)
    else:
        env.pop("XLA_FLAGS", None)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    return env


def _write_record(work_dir, record):
    path = os.path.join(work_dir, RECORD)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(record, f, indent=1)
    os.replace(tmp, path)


def _log_tail(path):
    try:
        with open(path, errors="replace") as f:
            lines = [line.strip() for line in f if line.strip()]
        return lines[-1] if lines else ""
    except OSError:
        return ""


def _start(n, attempt, argv, work_dir, logs):
    """Starts the N workers of ``attempt``; process 0 writes to this terminal, the
    others to ``process-<i>.log`` in the work folder."""
    port = free_port()
    env, procs = worker_env(), []
    for i in range(n):
        cmd = [sys.executable, "-c", WORKER, *argv, f"--process_id={i}",
               f"--coordinator=127.0.0.1:{port}", f"--attempt={attempt}"]
        if i == 0:
            procs.append(subprocess.Popen(cmd, env=env))
            continue
        with open(logs[i], "a") as log:
            log.write(f"--- attempt {attempt}, process {i} ---\n")
            log.flush()
            procs.append(subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT))
    return procs, f"127.0.0.1:{port}"


def _watch(procs):
    """Waits until every worker exits 0 (returns None) or one fails: returns its index.

    Of several found failed at once, a death is reported first, then a
    worker that lost its peer (status 4), then bad input (status 3). A
    worker that dies is reaped before its peers notice: they find it dead.
    """
    while True:
        codes = [p.poll() for p in procs]
        failed = [i for i, c in enumerate(codes) if c not in (None, 0)]
        if failed:
            deaths = [i for i in failed if codes[i] not in (BAD_INPUT, PEER_LOST)]
            lost = [i for i in failed if codes[i] == PEER_LOST]
            return (deaths or lost or failed)[0]
        if all(c == 0 for c in codes):
            return None
        time.sleep(POLL)


def _wait(procs, seconds):
    end = time.monotonic() + seconds
    while time.monotonic() < end and any(p.poll() is None for p in procs):
        time.sleep(POLL)


def _stop(procs):
    for p in procs:
        if p.poll() is None:
            p.kill()
    for p in procs:
        p.wait()


def supervise(prog, n, max_restarts, work_dir, names):
    """Runs the workers of ``tfprune-prune --processes=n``; returns the exit status."""
    os.makedirs(work_dir, exist_ok=True)
    argv = worker_flags(names)
    logs = {i: os.path.join(work_dir, f"process-{i}.log") for i in range(1, n)}
    record = {"processes": n, "max_restarts": max_restarts, "restarts": 0,
              "status": "running", "attempts": []}
    procs = []

    def terminate(signum, frame):  # the chief's own SIGTERM: take the workers down too
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        for attempt in range(max_restarts + 1):
            procs, address = _start(n, attempt, argv, work_dir, logs)
            entry = {"attempt": attempt, "coordinator": address,
                     "pids": [p.pid for p in procs], "exit_codes": None}
            record["attempts"].append(entry)
            record["restarts"] = attempt
            _write_record(work_dir, record)
            failed = _watch(procs)
            code = None if failed is None else procs[failed].returncode
            if code == BAD_INPUT:  # the others most likely refuse the same input: let them
                _wait(procs, GRACE)
            _stop(procs)
            entry["exit_codes"] = [p.returncode for p in procs]
            if failed is None:
                record["status"] = "finished"
                _write_record(work_dir, record)
                return 0
            pid = procs[failed].pid
            entry["failed"] = {"process": failed, "pid": pid, "exit": describe(code)}
            if code == BAD_INPUT:
                record["status"] = "bad input"
                _write_record(work_dir, record)
                if procs[0].returncode != BAD_INPUT:  # process 0 prints its own error
                    tail = _log_tail(logs[failed]).removeprefix(f"{prog}: error: ")
                    print(f"{prog}: error: process {failed}: {tail}", file=sys.stderr,
                          flush=True)
                return BAD_INPUT
            where = checkpoint_text(work_dir)
            if attempt == max_restarts:
                record["status"] = "gave up"
                _write_record(work_dir, record)
                print(f"{prog}: error: process {failed} (pid {pid}) died with {describe(code)};"
                      f" {where}; gave up after {max_restarts} restart(s) (--max_restarts="
                      f"{max_restarts}); run the same command again to resume from the last "
                      "checkpoint.", file=sys.stderr, flush=True)
                return 1
            _write_record(work_dir, record)
            print(f"{prog}: process {failed} (pid {pid}) died with {describe(code)}; {where}; "
                  f"restart {attempt + 1} of {max_restarts}", file=sys.stderr, flush=True)
    finally:
        _stop(procs)
        signal.signal(signal.SIGTERM, previous)
