"""The plugin keeps to the oldest Python its oldest QGIS ships.

metadata.txt says qgisMinimumVersion=3.22, and QGIS 3.22-3.28 for Windows ship
Python 3.9 (3.30 and later ship 3.12). So the code that ships (what ``make zip``
packs: not the tests, not the developer scripts) must run on Python 3.9. vermin
finds the language features and library calls that need a newer Python; it does
not honour ``from __future__ import annotations``, so ``X | None`` is checked
here instead: legal in annotations only under that import, never at run time.
"""

from __future__ import annotations

import ast
import configparser
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FLOOR = "3.9"
NOT_SHIPPED = {"test", "scripts", "docs", "build", "out", "__pycache__"}  # scripts/zip.sh leaves these out
TYPE_NAMES = {
    "None",
    "int",
    "float",
    "str",
    "bytes",
    "bool",
    "list",
    "dict",
    "tuple",
    "set",
    "frozenset",
    "object",
    "Path",
    "Any",
    "Callable",
    "Sequence",
    "Iterable",
    "Mapping",
}


def shipped_sources() -> list[Path]:
    return [
        p
        for p in sorted(ROOT.rglob("*.py"))
        if not any(part in NOT_SHIPPED or part.startswith(".") for part in p.relative_to(ROOT).parts[:-1])
    ]


def _is_type(node: ast.AST) -> bool:
    if isinstance(node, ast.Constant) and node.value is None:
        return True
    if isinstance(node, ast.Name):
        return node.id in TYPE_NAMES
    if isinstance(node, ast.Subscript):
        return _is_type(node.value)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        return _is_type(node.left) or _is_type(node.right)
    return False


def union_problems(text: str) -> list[str]:
    """``X | Y`` unions that Python 3.9 would evaluate (and fail on)."""
    tree = ast.parse(text)
    postponed = any(
        isinstance(n, ast.ImportFrom) and n.module == "__future__" and any(a.name == "annotations" for a in n.names)
        for n in tree.body
    )
    annotations: set[int] = set()
    for node in ast.walk(tree):
        found = []
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            args = node.args.posonlyargs + node.args.args + node.args.kwonlyargs + [node.args.vararg, node.args.kwarg]
            found = [a.annotation for a in args if a is not None and a.annotation is not None] + [node.returns]
        elif isinstance(node, ast.AnnAssign):
            found = [node.annotation]
        for annotation in found:
            if annotation is not None:
                annotations.update(id(n) for n in ast.walk(annotation))
    problems = []
    for node in ast.walk(tree):
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr) and _is_type(node):
            if id(node) in annotations and postponed:
                continue
            where = (
                "an annotation without `from __future__ import annotations`"
                if id(node) in annotations
                else "code that runs"
            )
            problems.append(f"{node.lineno}: {ast.unparse(node)} in {where}")
    return problems


def test_the_floor_is_what_the_minimum_qgis_ships():
    meta = configparser.ConfigParser()
    meta.read(ROOT / "metadata.txt", encoding="utf-8")
    minimum = tuple(int(p) for p in meta["general"]["qgisMinimumVersion"].split("."))
    assert minimum >= (3, 22)  # QGIS 3.22 is the oldest QGIS the plugin claims
    if minimum < (3, 30):
        assert FLOOR == "3.9"  # 3.22-3.28 for Windows: Python 3.9


def vermin(*files: str) -> subprocess.CompletedProcess:
    command = "import sys, vermin; sys.exit(vermin.main())"
    return subprocess.run(
        [sys.executable, "-c", command, f"-t={FLOOR}-", "--violations", "--no-tips", *files],
        capture_output=True,
        text=True,
        check=False,
    )


def test_vermin_finds_no_need_for_a_newer_python():
    done = vermin(*(str(p) for p in shipped_sources()))
    assert done.returncode == 0, done.stdout + done.stderr


def test_vermin_would_notice(tmp_path):
    newer = tmp_path / "newer.py"
    newer.write_text("from itertools import pairwise\nprint(list(pairwise([1, 2, 3])))\n")
    done = vermin(str(newer))
    assert done.returncode != 0 and "pairwise" in done.stdout


@pytest.mark.parametrize(
    "text, bad",
    [
        ("def f(x: int | None) -> str | None: ...", True),
        ("from __future__ import annotations\ndef f(x: int | None) -> str | None: ...", False),
        ("from __future__ import annotations\nOptional = int | None", True),
        ("from __future__ import annotations\nok = isinstance(1, (int, float))\nflags = A.X | A.Y", False),
    ],
)
def test_union_check_tells_postponed_from_evaluated(text, bad):
    assert bool(union_problems(text)) == bad


@pytest.mark.parametrize("path", shipped_sources(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_no_union_that_python_39_evaluates(path):
    problems = union_problems(path.read_text(encoding="utf-8"))
    assert not problems, f"{path.relative_to(ROOT)} needs Python 3.10:\n" + "\n".join(problems)
