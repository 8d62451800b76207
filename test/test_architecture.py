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
BASE = {"core.errors", "core.progress", "core.bands", "core.raster", "core.staging", "core.choices", "core.decision"}
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
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else ([node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            )
            found += [f"{path.relative_to(ROOT)}: {n}" for n in names if n.split(".")[0] in ("qgis", "PyQt5", "PyQt6")]
    assert not found


def test_core_imports_form_no_cycle():
    import_graph.layers(import_graph.graph())  # raises ValueError naming the cycle


def test_core_imports_stack_in_at_most_nine_layers():
    """A newcomer reads the flow top-down; each extra layer is one more module to hold in mind.

    Issue 26's target. When a change needs a tenth layer, move the type or constant the upper
    module needs down beside what it describes instead (docs/architecture.md, Layout)."""
    depth = import_graph.layers(import_graph.graph())
    top = max(depth.values())
    assert top <= 9, f"{top} layers: {sorted(m for m, d in depth.items() if d == top)} on top"


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
    """Parameter and output names are written once, in core/choices.py.

    A literal elsewhere in algorithms/ or ui/ could drift from what the dialog fills in or the
    algorithm reads."""
    names = [
        node.value.value
        for node in ast.parse((ROOT / "core" / "choices.py").read_text(encoding="utf-8")).body
        if isinstance(node, ast.Assign)
        and isinstance(node.value, ast.Constant)
        and isinstance(node.value.value, str)
        and node.value.value.isupper()
    ]
    assert "DILATION" in names and "CLOUD_UNCERTAINTY" in names
    literals = []
    for path in sorted([*(ROOT / "algorithms").glob("*.py"), *(ROOT / "ui").glob("*.py")]):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and node.value in names:
                literals.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.value}")
    assert not literals


def test_only_the_command_line_uses_the_season_package():
    """The season package is the batch's: the command line and the batch algorithm use it.

    The command line uses it through the public API, which the import graph sees through; no
    part of the single run does."""
    users = {
        m
        for m, targets in import_graph.graph().items()
        if package(m) != "core.season" and any(package(t) == "core.season" for t in targets)
    }
    assert users == {"core.cli"}


# -- the public API (core/__init__.py): what the front-ends use

# The front-ends: they take what they need from ``core`` (the public API), never from a module behind it.
FRONT_ENDS = sorted([*(ROOT / "algorithms").glob("*.py"), *(ROOT / "ui").glob("*.py"), ROOT / "core" / "cli.py"])


def core_imports(path: Path) -> list[tuple[int, str, list[str]]]:
    """(line, module, names) of each import of ``path`` that reaches into this plugin's ``core``.

    Module-level and inside functions; module is relative to the repository root ("core",
    "core.season.batch"), names those ``from module import`` takes (empty for ``import module``)."""
    package = list(path.relative_to(ROOT).parent.parts)
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                module = package[: len(package) - node.level + 1] + (node.module.split(".") if node.module else [])
            else:
                absolute = (node.module or "").split(".")
                module = absolute[1:] if absolute[0] == "cloud_mask_improver" else []
            names = [a.name for a in node.names]
            if module == [] and "core" in names:  # from .. import core
                found.append((node.lineno, "core", []))
            elif module[:1] == ["core"]:
                found.append((node.lineno, ".".join(module), names))
        elif isinstance(node, ast.Import):
            found += [
                (node.lineno, a.name.split(".", 1)[1], [])
                for a in node.names
                if a.name.startswith("cloud_mask_improver.core")
            ]
    return found


def test_the_front_ends_import_only_the_public_api():
    import cloud_mask_improver.core as core

    wrong = []
    for path in FRONT_ENDS:
        for line, module, names in core_imports(path):
            if module != "core" or set(names) - set(core.__all__):
                wrong.append(f"{path.relative_to(ROOT)}:{line}: {module} {names}")
    assert not wrong, "import these from core (add them to core/__init__.py): " + "; ".join(wrong)


def test_every_public_name_resolves_and_no_core_module_uses_the_public_api():
    """Each name of ``core.__all__`` is found in its module.

    The public API is for the front-ends: a core module that imported it would hide an import
    from the import graph (and could close a cycle through it); a public name that equals a
    submodule's would be replaced by that submodule once it is imported."""
    import cloud_mask_improver.core as core

    missing = [name for name in core.__all__ if getattr(core, name, None) is None]
    assert not missing
    assert sorted(core.__all__) == sorted(set(dir(core)) & set(core.__all__))
    submodules = set(import_graph.modules())
    # choices is the submodule itself: the namespace of the parameter names
    assert not [n for n in core.__all__ if f"core.{n}" in submodules and n != "choices"]
    users = []  # ``from . import area`` imports a module; ``from . import Area`` the public API
    for name, path in import_graph.modules().items():
        if name != "core.cli" and path.name != "__init__.py":
            users += [
                f"{name}:{line}"
                for line, module, names in core_imports(path)
                if module == "core" and (not names or any(f"core.{n}" not in submodules for n in names))
            ]
    assert not users


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
