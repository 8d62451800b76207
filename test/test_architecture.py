"""The layout of ``core/`` keeps its promises: no QGIS, no cycles, side packages below or beside the run."""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("import_graph", ROOT / "scripts" / "import_graph.py")
import_graph = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(import_graph)

# What each side package may import. The base modules are what every part of the engine
# shares (errors, progress, band names, raster I/O, staged outputs, the parameters' choices,
# and the rules that decide a pixel, which model cards name).
BASE = {"core.errors", "core.progress", "core.bands", "core.raster", "core.staging", "core.choices",
        "core.decision"}
ALLOWED = {
    "core.runtime": set(),
    "core.modelstore": {"core.runtime"} | BASE,
    "core.sentinel2": BASE,
}


def package(module: str) -> str:
    parts = module.split(".")
    return ".".join(parts[:2]) if len(parts) > 2 else "core"


def test_core_never_imports_qgis():
    found = []
    for path in sorted((ROOT / "core").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            found += [f"{path.relative_to(ROOT)}: {n}" for n in names if n.split(".")[0] in ("qgis", "PyQt5", "PyQt6")]
    assert not found


def test_core_imports_form_no_cycle():
    import_graph.layers(import_graph.graph())  # raises ValueError naming the cycle


def test_side_packages_import_only_what_lies_below_them():
    wrong = []
    for module, targets in import_graph.graph().items():
        home = package(module)
        if home not in ALLOWED:
            continue
        for target in targets:
            if package(target) != home and package(target) not in ALLOWED[home] and target not in ALLOWED[home]:
                wrong.append(f"{module} -> {target}")
    assert not wrong


def test_the_algorithms_and_the_dialog_name_parameters_by_their_constants():
    """Parameter and output names are written once, in core/choices.py: a literal elsewhere
    in algorithms/ or ui/ could drift from what the dialog fills in or the algorithm reads."""
    names = [node.value.value for node in ast.parse((ROOT / "core" / "choices.py").read_text(encoding="utf-8")).body
             if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant)
             and isinstance(node.value.value, str) and node.value.value.isupper()]
    assert "DILATION" in names and "CLOUD_UNCERTAINTY" in names
    literals = []
    for path in sorted([*(ROOT / "algorithms").glob("*.py"), *(ROOT / "ui").glob("*.py")]):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and node.value in names:
                literals.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.value}")
    assert not literals


def test_only_the_command_line_uses_the_season_package():
    users = {m for m, targets in import_graph.graph().items()
             if package(m) != "core.season" and any(package(t) == "core.season" for t in targets)}
    assert users == {"core.cli"}


def test_every_error_a_user_can_fix_is_declared_in_errors_py():
    """errors.py is the list of what can go wrong for a user: no module declares its own."""
    classes = []  # (name, its base names, file)
    for path in sorted((ROOT / "core").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef):
                bases = {getattr(b, "id", getattr(b, "attr", "")) for b in node.bases}
                classes.append((node.name, bases, str(path.relative_to(ROOT))))
    user_errors = {"CloudMaskError": "core/errors.py"}
    while True:
        more = {name: file for name, bases, file in classes if bases & set(user_errors) and name not in user_errors}
        if not more:
            break
        user_errors.update(more)
    elsewhere = {name: file for name, file in user_errors.items() if file != "core/errors.py"}
    assert not elsewhere
    assert {"RasterError", "ModelError", "AreaError", "OutputError", "SummaryInUseError"} <= set(user_errors)
