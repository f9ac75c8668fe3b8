"""tfprune: Keras 3 pruning with criteria, sensitivity analysis, structure removal and LiteRT export."""

from setuptools import find_packages, setup

setup(
    name="tfprune",
    version="0.1.0",
    description="Keras 3 pruning: criteria, granularities, sensitivity analysis, "
                "structural pruning and sparse LiteRT export",
    long_description=open("README.md", encoding="utf-8").read() if __import__("os").path.exists("README.md") else "",
    long_description_content_type="text/markdown",
    packages=find_packages(include=["tfprune", "tfprune.*", "tfprune_cli"]),
    python_requires=">=3.10",
    install_requires=[
        "tensorflow>=2.16",
        "keras>=3.3",
        "ai-edge-litert>=1.0",
        "absl-py",
        "flatbuffers",
        "numpy",
    ],
    extras_require={
        "plots": ["matplotlib"],
        "hub": ["keras-hub"],
        "data": ["mlxtend", "tensorflow-datasets"],
        "compare": ["tensorflow-model-optimization>=0.8.1", "tf_keras>=2.21,<2.22", "tensorboard", "mlxtend"],
        "dev": ["pytest", "pytest-xdist", "ruff", "mlxtend", "matplotlib", "scikit-learn"],
        # KERAS_BACKEND=jax (CPU): training, schedules and masks; see README "Backends".
        "jax": ["jax", "jaxlib"],
    },
    # The console scripts start in tfprune_cli, which parses and checks flags without
    # importing TensorFlow (`import tfprune` does), so --help and bad input answer at once.
    entry_points={"console_scripts": [
        "tfprune-export=tfprune_cli.export:run",
        "tfprune-bench=tfprune_cli.bench:run",
        "tfprune-sensitivity=tfprune_cli.sensitivity:run",
        "tfprune-prune=tfprune_cli.prune:run",
        "tfprune-report=tfprune_cli.report:run",
        "tfprune-latency=tfprune_cli.latency:run",
    ]},
    classifiers=[
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
