"""One worker of ``tfprune-prune --processes=N``; the chief (``tfprune_cli._supervise``) starts N.

Usage (the chief builds it)::

    python -m tfprune.cli._processes <tfprune-prune flags> --processes=N \\
        --process_id=I --coordinator=127.0.0.1:PORT --attempt=A

The worker joins ``jax.distributed`` through ``keras.distribution.initialize``
and runs ``tfprune-prune``'s pruning and fine-tuning under
``keras.distribution.DataParallel(auto_shard_dataset=False)``: every process
loads the same data and, each epoch, feeds its own part of every global
batch of ``--batch_size`` (process ``I`` takes columns ``[I*b, (I+1)*b)``, ``b
= batch_size / N``, of the epoch's shuffled order); the samples that do not
fill a whole global batch are dropped, so every process runs the same
number of steps. Process 0 alone writes the checkpoints, state, model and
summary; every process reads the work folder's state before a barrier, so
all resume from the same checkpoint.

Exit status: 0 done; 3 bad input (printed by process 0; the chief does not
restart); anything else (an error, a signal) makes the chief restart every
worker from the last checkpoint. The worker leaves with ``os._exit`` on an
error, so it never waits for a dead peer in ``jax.distributed``'s shutdown.

``TFPRUNE_TEST_KILL=I:E`` (for tests) makes process ``I`` kill itself with
SIGKILL at the end of epoch ``E`` of the first attempt.
"""

import os
import signal
import sys
import traceback

from absl import flags

from tfprune.cli import _flags, prune
from tfprune.cli._flags import UserError, define

FLAGS = flags.FLAGS
PROG = prune.PROG
BAD_INPUT = 3
PEER_LOST = 4  # a collective failed because another worker died: the chief reports that one
TEST_KILL = "TFPRUNE_TEST_KILL"


def define_flags():
    return prune.define_flags() + [
        define(flags.DEFINE_integer, "process_id", 0, "This worker's index, 0..processes-1."),
        define(flags.DEFINE_string, "coordinator", None,
               "host:port of the jax.distributed coordinator (process 0)."),
        define(flags.DEFINE_integer, "attempt", 0, "0, then 1, 2, ... after each restart."),
    ]


class Processes:
    """This process's part in the data-parallel run (what ``prune_and_fine_tune`` asks)."""

    def __init__(self, index, count, attempt):
        self.index, self.count = index, count
        self.writer = index == 0
        self.batch_size = FLAGS.batch_size // count  # per process; the chief checked it divides
        self.callbacks = _test_kill(index, attempt)

    def steps_per_epoch(self, samples):
        steps = samples // FLAGS.batch_size
        if not steps:
            raise UserError(f"--batch_size={FLAGS.batch_size} is more than the {samples} "
                            "training samples; with --processes only whole global batches "
                            "are trained: lower --batch_size.")
        return steps

    def shard(self, order):
        """This process's columns of each whole global batch of ``order``."""
        big, b = FLAGS.batch_size, self.batch_size
        rows = order[:len(order) // big * big].reshape(-1, big)
        return rows[:, self.index * b:(self.index + 1) * b].reshape(-1)

    def barrier(self, name):
        from jax.experimental import multihost_utils
        multihost_utils.sync_global_devices(f"tfprune-prune-{name}")


def _test_kill(index, attempt):
    spec = os.environ.get(TEST_KILL, "")
    if not spec or attempt:
        return []
    process, epoch = (int(v) for v in spec.split(":"))
    if process != index:
        return []
    import keras

    class Die(keras.callbacks.Callback):
        def on_epoch_end(self, e, logs=None):
            if e + 1 == epoch:
                sys.stderr.flush()
                os.kill(os.getpid(), signal.SIGKILL)

    return [Die()]


def _join():
    """jax.distributed and a DataParallel distribution over every process's CPU."""
    import tensorflow  # noqa: F401 - loaded first, as import_tfprune does
    import keras
    keras.distribution.initialize(job_addresses=FLAGS.coordinator,
                                  num_processes=FLAGS.processes, process_id=FLAGS.process_id)
    import jax
    keras.distribution.set_distribution(
        keras.distribution.DataParallel(devices=jax.devices(), auto_shard_dataset=False))


def main(argv):
    _flags.quiet_logs()
    try:
        if os.environ.get("KERAS_BACKEND") != "jax":
            raise UserError("the workers of --processes run on JAX: set KERAS_BACKEND=jax.")
        with _flags.quiet_stderr():  # TensorFlow's and the collectives' C++ log lines
            _join()
            _flags.import_tfprune()
        procs = Processes(FLAGS.process_id, FLAGS.processes, FLAGS.attempt)
        prune.prune_and_fine_tune(argv, procs=procs)
    except Exception as e:  # noqa: BLE001 - sorted below: lost peer, bad input, other
        _leave(e)
    except BaseException:  # noqa: BLE001 - KeyboardInterrupt, SystemExit: the chief decides
        _leave(None)
    return 0


def peer_lost(error):
    """True when ``error`` (or what caused it) is a collective that lost a peer.

    A dead worker makes its peers' next all-gather fail ("Gloo AllGather
    failed ... Connection reset by peer"), and Keras may re-raise that as a
    ValueError: without this check the survivors would report bad input
    (exit status 3) and the chief would not restart them.
    """
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        text = f"{type(error).__name__}: {error}"
        if any(k in text for k in ("Gloo", "Connection reset by peer", "Connection closed by peer",
                                   "coordination service", "Barrier timed out")):
            return True
        error = error.__cause__ or error.__context__
    return False


def _leave(e):
    """Exits: silently (PEER_LOST) after a lost peer, 3 with one line for bad input, else 1."""
    if e is not None and peer_lost(e):
        if (_flags.verbosity() or 0) >= 1:
            traceback.print_exc()
        sys.stdout.flush()
        os._exit(PEER_LOST)
    if isinstance(e, (UserError, ValueError, TypeError, FileNotFoundError, ImportError)):
        if (_flags.verbosity() or 0) >= 1:
            traceback.print_exc()
        print(f"{PROG}: error: {_flags.one_line(e)}", file=sys.stderr, flush=True)
        sys.stdout.flush()
        os._exit(BAD_INPUT)
    # any other failure: the chief restarts us
    traceback.print_exc()
    sys.stderr.flush()
    sys.stdout.flush()
    os._exit(1)


def run(argv=None):
    _flags.run(PROG, __doc__, define_flags(), main, argv)


if __name__ == "__main__":
    run()
