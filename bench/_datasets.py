"""Data sets of the benchmarks against gradient training (bench/vs_adam.py).

Two kinds, both returned with a **column of ones appended** to X (the bias, last column):

teacher
    ``X = [N(0, I)^(d-1), 1]`` (n rows) and y the output of a random ReLU teacher plus
    N(0, ``NOISE_STD``^2) noise: at depth 2, ``TEACHER_UNITS`` neurons
    ``s_k (X w_k)_+`` with ``w_k ~ N(0, I/d)`` and random signs ``s_k``; at depth 3,
    ``TEACHER_UNITS`` parallel sub-networks ``s_k ((X W_k)_+ v_k)_+`` of the given width,
    ``W_k ~ N(0, I/d)``, ``v_k ~ N(0, I)``.  (``_common.make_data`` is not reused: its X
    is N(0, 1/d) with no bias column, to match the feasibility study's timings.)
uci
    The "121 UCI data sets" files of the project's shared data folder
    (``<shared>/data/uci/<name>/``, see its README): features already z-scored; the
    "regression framing" of the papers' code for a scalar-output network: two classes
    are mapped to -1 / +1 (label 0 -> -1, 1 -> +1), more classes to the class index
    0..C-1 as a float.  The whole file is used (and a separate test file, where the
    metadata names one, is appended): the benchmarks compare training objectives.
"""

import math
from pathlib import Path

import numpy as np

#: The shared data folder: ``../shared/data`` beside the repository (the layout of the
#: developers' machines and of CI, where shared/ is copied next to the clone).
DEFAULT_DATA_DIR = Path(__file__).resolve().parent.parent.parent / "shared" / "data"

#: The six data sets of Table 1 of Ergen & Pilanci (2021), in the paper's order.
UCI_TABLE1 = (
    "acute-inflammation",
    "acute-nephritis",
    "balloons",
    "breast-tissue",
    "fertility",
    "pittsburg-bridges-SPAN",
)

#: Neurons (depth 2) or sub-networks (depth 3) of the teacher, and its noise.
TEACHER_UNITS = 5
NOISE_STD = 0.1


# ----------------------------------------------------------------------------- teacher
def teacher_data(depth: int, n: int, d: int, seed: int = 0, width: int = 2):
    """Teacher data (module docstring): X of shape (n, d) whose last column is ones, and y.

    ``d`` counts the ones column: X has ``d - 1`` Gaussian columns.
    """
    if depth not in (2, 3):
        raise ValueError(f"depth must be 2 or 3, got {depth}")
    if n < 1 or d < 2 or width < 1:
        raise ValueError(
            f"need n >= 1, d >= 2 (ones column included), width >= 1; got n={n}, d={d}, "
            f"width={width}"
        )
    rng = np.random.default_rng(seed)
    X = np.hstack([rng.standard_normal((n, d - 1)), np.ones((n, 1))])
    signs = rng.choice([-1.0, 1.0], size=TEACHER_UNITS)
    if depth == 2:
        hidden = np.maximum(X @ rng.standard_normal((d, TEACHER_UNITS)) / math.sqrt(d), 0.0)
    else:
        W = rng.standard_normal((d, TEACHER_UNITS * width)) / math.sqrt(d)
        first = np.maximum(X @ W, 0.0).reshape(n, TEACHER_UNITS, width)
        v = rng.standard_normal((TEACHER_UNITS, width))
        hidden = np.maximum(np.einsum("nkj,kj->nk", first, v), 0.0)
    y = hidden @ signs + NOISE_STD * rng.standard_normal(n)
    return X, y


# --------------------------------------------------------------------------------- uci
def uci_dir(data_dir: Path | str = DEFAULT_DATA_DIR) -> Path:
    return Path(data_dir) / "uci"


def uci_available(name: str, data_dir: Path | str = DEFAULT_DATA_DIR) -> bool:
    """True when ``<data_dir>/uci/<name>/<name>.txt`` exists."""
    return (uci_dir(data_dir) / name / f"{name}.txt").is_file()


def read_uci_metadata(name: str, data_dir: Path | str = DEFAULT_DATA_DIR) -> dict:
    """The ``key= value`` lines of ``<name>.txt`` as a dict of strings."""
    path = uci_dir(data_dir) / name / f"{name}.txt"
    meta = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if "=" in line:
            key, value = line.split("=", 1)
            meta[key.strip()] = value.strip()
    return meta


def read_uci_table(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Features (n, d) and integer labels (n,) of one ``*_R.dat`` file (tab-separated,
    a header line, then: 1-based row id, d features, label)."""
    rows = []
    with open(path, encoding="utf-8") as f:
        next(f)  # header: \tf1\t...\tfd\tclase
        for line in f:
            if line.strip():
                rows.append([float(v) for v in line.split()])
    table = np.array(rows, dtype=np.float64)
    labels = table[:, -1]
    if not np.array_equal(labels, np.round(labels)):
        raise ValueError(f"{path}: non-integer class labels")
    return table[:, 1:-1], labels.astype(np.int64)


def load_uci(name: str, data_dir: Path | str = DEFAULT_DATA_DIR):
    """X (features and a ones column) and the scalar regression target y of UCI set ``name``.

    Returns
    -------
    X : ndarray of shape (n, d + 1)
    y : ndarray of shape (n,)
        -1 / +1 for two classes, the class index 0..C-1 for more.
    info : dict
        ``n``, ``d`` (features, without the ones column), ``n_classes`` and ``files``.
    """
    meta = read_uci_metadata(name, data_dir)
    folder = uci_dir(data_dir) / name
    files = [meta["fich1"]] + ([meta["fich2"]] if meta.get("fich2") else [])
    parts = [read_uci_table(folder / f) for f in files]
    features = np.vstack([p[0] for p in parts])
    labels = np.concatenate([p[1] for p in parts])
    n_classes = int(meta["n_clases"])
    d = int(meta["n_entradas"])
    if features.shape[1] != d:
        raise ValueError(f"{name}: {features.shape[1]} feature columns, metadata says {d}")
    if labels.min() < 0 or labels.max() >= n_classes:
        raise ValueError(f"{name}: labels outside 0..{n_classes - 1}")
    y = 2.0 * labels - 1.0 if n_classes == 2 else labels.astype(np.float64)
    X = np.hstack([features, np.ones((features.shape[0], 1))])
    info = {"n": X.shape[0], "d": d, "n_classes": n_classes, "files": files}
    return X, y, info
