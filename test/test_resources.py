"""resources.qrc lists the plugin's icons: every file it names exists, and every icon loaded is in it.

Every icon the shipped code or metadata.txt loads is in it (the design keeps it as that list;
nothing compiles it)."""

import ast
import configparser
import re
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ("plugin.py", "__init__.py", "algorithms", "ui", "core")
IMAGE = re.compile(r"\.(svg|png|jpe?g|gif|ico)$", re.IGNORECASE)


def listed() -> list:
    root = ET.parse(ROOT / "resources.qrc").getroot()  # nosec B314 - the repository's own file
    return [element.text.strip() for element in root.iter("file")]


def python_files() -> list:
    files = []
    for name in SHIPPED:
        path = ROOT / name
        files += sorted(path.rglob("*.py")) if path.is_dir() else [path]
    return files


def icons_in_code(source: str) -> set:
    """Image paths a module names: os.path.join(..., "icons", "x.svg") and "icons/x.svg" literals."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call):
            parts = [arg.value for arg in node.args if isinstance(arg, ast.Constant) and isinstance(arg.value, str)]
            if parts and IMAGE.search(parts[-1]):
                found.add("/".join(parts))
        elif (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and "/" in node.value
            and IMAGE.search(node.value)
            and not node.value.startswith(":/")
        ):
            found.add(node.value.lstrip("./"))
    return found


def test_every_listed_icon_exists():
    assert listed(), "resources.qrc lists no file"
    for name in listed():
        assert (ROOT / name).is_file(), f"resources.qrc lists {name}, which does not exist"


def test_every_icon_the_plugin_loads_is_listed():
    meta = configparser.ConfigParser()
    meta.read(ROOT / "metadata.txt", encoding="utf-8")
    used = {meta["general"]["icon"]}
    for path in python_files():
        used |= icons_in_code(path.read_text(encoding="utf-8"))
    assert "icons/icon.svg" in used  # the scan does find the icon plugin.py and the provider load
    assert used <= set(listed()), f"loaded but not in resources.qrc: {sorted(used - set(listed()))}"
    shipped_images = {p.relative_to(ROOT).as_posix() for p in (ROOT / "icons").rglob("*") if IMAGE.search(p.name)}
    unlisted = sorted(shipped_images - set(listed()))
    assert not unlisted, f"in icons/ but not in resources.qrc: {unlisted}"
