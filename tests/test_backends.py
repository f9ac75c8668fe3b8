"""Backend selection: a clear error when KERAS_BACKEND names a backend that is not installed."""

import os
import subprocess
import sys

# find_spec reports jax missing, as on a machine without it (the import stops before Keras).
HIDE_JAX = """
import importlib.util
real = importlib.util.find_spec
importlib.util.find_spec = lambda name, *a: None if name.split(".")[0] in ("jax", "jaxlib") else real(name, *a)
import tfprune
"""


def test_jax_backend_without_jax_names_the_extra():
    env = dict(os.environ, KERAS_BACKEND="jax", TF_CPP_MIN_LOG_LEVEL="3")
    out = subprocess.run([sys.executable, "-c", HIDE_JAX], env=env, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode != 0
    assert "KERAS_BACKEND=jax, but JAX is not installed" in out.stderr
    assert "pip install tfprune[jax]" in out.stderr
