"""Package metadata for admmrelu.

The hot loops live in the top-level ``kernels/`` folder and are installed as the
subpackage ``admmrelu.kernels``, so nothing named plain ``kernels`` lands in
site-packages.
"""

from setuptools import setup

setup(
    name="admmrelu",
    version="0.1.0",
    description=(
        "Train ReLU networks to proven global optimality by solving their exact "
        "convex reformulations"
    ),
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="BSD-3-Clause",
    python_requires=">=3.11",
    packages=["admmrelu", "admmrelu.kernels"],
    package_dir={"admmrelu": "admmrelu", "admmrelu.kernels": "kernels"},
    install_requires=[
        "numpy>=1.26",
        "scipy>=1.11",
        "numba>=0.59",
        "cvxpy>=1.5",
        "clarabel>=0.9",
        "ecos>=2.0.12",
        "scs>=3.2",
        "scikit-learn>=1.6",
        "threadpoolctl>=3.1",
    ],
    extras_require={
        "gpu": ["cupy-cuda13x>=13.6"],
        "gpu-cuda12": ["cupy-cuda12x>=13"],
        "bench": ["torch==2.13.0", "matplotlib>=3.8"],
        "test": ["pytest>=7.4", "hypothesis>=6.90", "ruff>=0.5"],
    },
    entry_points={"console_scripts": ["admmrelu=admmrelu.cli:main"]},
    classifiers=[
        "Programming Language :: Python :: 3.11",
        "Programming Language :: Python :: 3.12",
        "Topic :: Scientific/Engineering :: Mathematics",
    ],
)
