"""Every ```python block of README.md and docs/*.md runs, and prints what the docs show.

Conventions in the markdown. They are HTML comments, invisible when rendered, each on the
line right before a fenced block (blank lines between are allowed, text is not):

* ``<!-- output -->`` before a fenced block without a language: that block is what the
  nearest ```python block above it prints. The test compares the two (``_agree``: words
  exactly, numbers with the tolerances stated there, spacing ignored).
* ``<!-- needs-gpu -->`` before a ```python block: it runs only where a GPU is usable
  (``admmrelu.kernels.gpu_unavailable_reason()`` is None); elsewhere it is reported as
  skipped, with that reason.
* ``<!-- skip-test: REASON -->`` before a ```python block: it never runs here and is
  reported as skipped with REASON. Only for what cannot run in a test at all; a slow example
  is made smaller instead.

The ```python blocks of one file run in order in one namespace, the way a reader runs a
page: a block may use the imports and variables of the blocks above it (docs/estimators.md
and docs/kernels.md do). Running one block alone (``-k "estimators.md:3"``) first runs the
blocks above it. Other fences (bash, plain text) are not run; the README's
``python3 -m admmrelu demo`` is covered by tests/test_cli.py.

The examples run with one BLAS thread (conftest.py), the setting their shown outputs were
taken with.
"""

import contextlib
import io
import math
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FILES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

_FENCE = re.compile(r"^(\s*)```\s*([\w+-]*)\s*$")
_MARKER = re.compile(r"^\s*<!--\s*(output|needs-gpu|skip-test:\s*(.*?))\s*-->\s*$")


@dataclass
class Block:
    """A ```python block: its code, what it is shown to print, how it is marked."""

    file: str  # relative to the repository root
    index: int  # 1-based, among the file's python blocks
    line: int  # 1-based line of the opening fence
    code: str
    output: str | None = None  # the <!-- output --> block after it, if any
    skip: str | None = None  # <!-- skip-test: REASON -->
    needs_gpu: bool = False  # <!-- needs-gpu -->

    @property
    def id(self):
        return f"{self.file}:{self.index}"


def _parse(path):
    """The python blocks of one markdown file, and the misplaced markers found on the way."""
    name = str(path.relative_to(ROOT))
    lines = path.read_text().splitlines()
    blocks, problems, pending = [], [], []  # pending: (marker, reason, line) awaiting a fence
    i = 0
    while i < len(lines):
        line = lines[i]
        marker, fence = _MARKER.match(line), _FENCE.match(line)
        if marker:
            kind = "skip-test" if marker.group(1).startswith("skip-test") else marker.group(1)
            pending.append((kind, marker.group(2), i + 1))
            i += 1
            continue
        if not fence:
            if line.strip():
                problems += [
                    f"{name}:{at}: <!-- {k} --> is not right before a fence"
                    for k, _, at in pending
                ]
                pending = []
            i += 1
            continue
        indent, lang, start = fence.group(1), fence.group(2), i + 1
        body = []
        i += 1
        while i < len(lines) and lines[i].strip() != "```":
            body.append(lines[i][len(indent) :] if lines[i].startswith(indent) else lines[i])
            i += 1
        i += 1  # the closing fence
        text = "\n".join(body) + "\n"
        kinds = {kind: (reason, at) for kind, reason, at in pending}
        pending = []
        if lang == "python":
            block = Block(name, len(blocks) + 1, start, text)
            block.skip = kinds.get("skip-test", (None,))[0]
            block.needs_gpu = "needs-gpu" in kinds
            if "output" in kinds:
                problems.append(f"{name}:{kinds['output'][1]}: <!-- output --> before python code")
            blocks.append(block)
            continue
        for kind in ("skip-test", "needs-gpu"):
            if kind in kinds:
                problems.append(
                    f"{name}:{kinds[kind][1]}: <!-- {kind} --> before a non-python block"
                )
        if "output" in kinds:
            if lang:
                problems.append(f"{name}:{start}: an output block has a language ({lang})")
            elif not blocks:
                problems.append(f"{name}:{start}: an output block with no python block above it")
            elif blocks[-1].output is not None:
                problems.append(f"{name}:{start}: a second output block for {blocks[-1].id}")
            else:
                blocks[-1].output = text
    problems += [f"{name}:{at}: <!-- {k} --> at the end of the file" for k, _, at in pending]
    return blocks, problems


_PARSED = {path: _parse(path) for path in FILES}
BLOCKS = {str(p.relative_to(ROOT)): blocks for p, (blocks, _) in _PARSED.items()}
ALL_BLOCKS = [b for blocks in BLOCKS.values() for b in blocks]


def test_markers_are_well_formed():
    problems = [p for _, found in _PARSED.values() for p in found]
    assert not problems, "\n".join(problems)
    assert BLOCKS["README.md"] and len(ALL_BLOCKS) >= 10  # the files were found and parsed


# ---------------------------------------------------------------- comparing outputs

# A number: not glued to a word or a dot on either side ("float32", "W1", "2L" are words).
_NUMBER = re.compile(r"(?<![\w.])[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?(?![\w.])")

# Below this, a shown number is a quantity that only means "small": a duality gap, a
# residual. The ADMM stops at the first iterate whose certified relative gap is below
# eps_rel = 1e-6, so such values depend on round-off (BLAS, compiler, a change elsewhere in
# the solver) and the docs claim only their order of magnitude: the printed value passes
# when it is at most ten times the shown one, and never needs to be below 1e-7.
SMALL = 1e-6
SMALL_FLOOR = 1e-7
# Any other non-integer: a converged quantity (objective, prediction, R^2, ...). The solve is
# certified to a relative gap of 1e-6, so two correct solves agree on the objective to about
# that, and the shown digits are checked to a relative 1e-6.
REL = 1e-6


def _tokens(text):
    """Words (whitespace-separated, numbers split off) and numbers, spacing ignored."""
    out, at = [], 0
    for m in _NUMBER.finditer(text):
        out += text[at : m.start()].split()
        out.append(m.group())
        at = m.end()
    return out + text[at:].split()


def _is_number(token):
    return _NUMBER.fullmatch(token) is not None


def _numbers_agree(shown, printed):
    a, b = float(shown), float(printed)
    if re.fullmatch(r"[-+]?\d+", shown):  # counts, shapes, iterations, seeds: exactly
        return a == b
    if abs(a) < SMALL:
        return abs(b) <= max(10 * abs(a), SMALL_FLOOR)
    return math.isclose(a, b, rel_tol=REL)


def _agree(shown, printed):
    """None when `printed` matches `shown`, else where it does not."""
    s, p = _tokens(shown), _tokens(printed)
    for k, (x, y) in enumerate(zip(s, p, strict=False)):
        if _is_number(x) and _is_number(y):
            if not _numbers_agree(x, y):
                return f"token {k}: shown {x}, printed {y}"
        elif x != y:
            return f"token {k}: shown {x!r}, printed {y!r}"
    if len(s) != len(p):
        return f"shown {len(s)} tokens, printed {len(p)}"
    return None


@pytest.mark.parametrize(
    ("shown", "printed", "ok"),
    [
        ("objective 0.231004, gap 9.2e-10", "objective  0.2310041, gap 4e-8", True),
        ("objective 0.231004, gap 9.2e-10", "objective 0.231010, gap 4e-8", False),
        ("gap=3.0e-07 x", "gap=2.9e-06 x", True),
        ("gap=3.0e-07 x", "gap=3.1e-06 x", False),
        ("[ 0.5 -0.25]", "[0.5 -0.25]", True),  # numpy's spacing
        ("iterations=120 (3, 33)", "iterations=121 (3, 33)", False),
        ("optimal True", "optimal False", False),
        ("float32 W1", "float64 W1", False),
        ("a 1 2", "a 1", False),
    ],
)
def test_output_comparison(shown, printed, ok):
    assert (_agree(shown, printed) is None) == ok


# ---------------------------------------------------------------- running the examples

_STATE = {}  # file -> [namespace, python blocks run so far, ids of the ones that failed]


def _exec(block, namespace):
    """Run one block; tracebacks point at the markdown file's own lines."""
    code = compile("\n" * block.line + block.code, str(ROOT / block.file), "exec")
    exec(code, namespace)


def _skip_reason(block):
    if block.skip is not None:
        return block.skip or "marked skip-test"
    if block.needs_gpu:
        from admmrelu.kernels import gpu_unavailable_reason

        reason = gpu_unavailable_reason()
        return None if reason is None else f"needs a usable GPU: {reason}"
    return None


@pytest.mark.parametrize(
    "block",
    [pytest.param(b, id=b.id, marks=[pytest.mark.gpu] if b.needs_gpu else []) for b in ALL_BLOCKS],
)
def test_docs_example(block):
    state = _STATE.get(block.file)
    if state is None or state[1] >= block.index:  # first, or run again: from the top
        state = _STATE[block.file] = [{"__name__": "docs_example"}, 0, []]
    namespace = state[0]
    for earlier in BLOCKS[block.file][state[1] : block.index - 1]:  # catch up
        state[1] = earlier.index
        if _skip_reason(earlier) is None:
            try:
                with contextlib.redirect_stdout(io.StringIO()):
                    _exec(earlier, namespace)
            except Exception:
                state[2].append(earlier.id)
    state[1] = block.index
    reason = _skip_reason(block)
    if reason is not None:
        pytest.skip(f"{block.id} (line {block.line}): {reason}")
    stdout = io.StringIO()
    try:
        with contextlib.redirect_stdout(stdout):
            _exec(block, namespace)
    except Exception as error:
        state[2].append(block.id)
        if len(state[2]) > 1:
            error.add_note(f"earlier blocks of {block.file} failed: {', '.join(state[2][:-1])}")
        raise
    if block.output is not None:
        printed = stdout.getvalue()
        where = _agree(block.output, printed)
        assert where is None, (
            f"{block.id} (line {block.line}) prints other than its docs show ({where}).\n"
            f"--- shown:\n{block.output}--- printed:\n{printed}"
        )
