"""QGIS 4 (Qt6) readiness: the plugin's code uses no spelling that PyQt6 removed.

PyQt6 drops unscoped enum members (``Qt.AlignLeft`` must be
``Qt.AlignmentFlag.AlignLeft``, ``Qgis.Success`` must be
``Qgis.MessageLevel.Success``), ``exec_()``, ``QRegExp`` and compiled Qt
resources (pyrcc5 has no PyQt6 successor). All the scoped spellings exist on
QGIS 3.22 already, so one code base serves both.

Two checks over every ``.py`` file of the plugin (not the tests, which name the
old spellings on purpose), so code added later is covered too:
- ``REMOVED``: the spellings QGIS's migration notes and its ``pyqt5_to_pyqt6``
  script rewrite, as patterns (they also catch what this QGIS cannot resolve);
- ``unscoped_enum_members``: any ``Class.Member`` where the member belongs to
  an enum declared in that class (looked up in the running QGIS), which catches
  enums nobody listed.
"""

from __future__ import annotations

import ast
import configparser
import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SKIP_DIRS = {"test", "build", "out", "docs", "__pycache__"}

# pattern -> the spelling to use instead (QGIS's Qt6 migration notes and pyqt5_to_pyqt6).
REMOVED = {
    r"\bQgis\.(Info|Warning|Critical|Success|NoLevel)\b": r"Qgis.MessageLevel.\1",
    r"\bQgsProcessingParameterNumber\.(Integer|Double)\b": r"QgsProcessingParameterNumber.Type.\1",
    r"\bQgsProcessingParameterFile\.(File|Folder)\b": r"QgsProcessingParameterFile.Behavior.\1",
    r"\b(QgsProcessingParameter\w*)\.(Flag(?:Advanced|Hidden|Optional|IsModelOutput))\b": r"\1.Flag.\2",
    r"\bQgsProcessingAlgorithm\.(Flag\w+)\b": r"QgsProcessingAlgorithm.Flag.\1",
    r"\bQgsProcessing\.(Type\w+)\b": r"QgsProcessing.SourceType.\1",
    r"\bQgsMapLayerProxyModel\.(\w+Layer|All|\w+Geometry)\b": r"QgsMapLayerProxyModel.Filter.\1",
    r"\bQgsFileWidget\.(GetFile|GetDirectory|GetMultipleFiles|SaveFile)\b": r"QgsFileWidget.StorageMode.\1",
    r"\bQgsTask\.(CanCancel|CancelWithoutPrompt|Hidden|Silent|AllFlags)\b": r"QgsTask.Flag.\1",
    r"\bQgsMessageBar\.(INFO|WARNING|CRITICAL|SUCCESS)\b": r"Qgis.MessageLevel.<Level>",
    r"\bQt\.(Align(?:Left|Right|Top|Bottom|HCenter|VCenter|Center))\b": r"Qt.AlignmentFlag.\1",
    r"\bQt\.(\w+Role)\b": r"Qt.ItemDataRole.\1",
    r"\bQt\.(ItemIs\w+)\b": r"Qt.ItemFlag.\1",
    r"\bQt\.(Checked|Unchecked|PartiallyChecked)\b": r"Qt.CheckState.\1",
    r"\bQt\.(\w+Cursor)\b": r"Qt.CursorShape.\1",
    r"\bQt\.(Horizontal|Vertical)\b": r"Qt.Orientation.\1",
    r"\bQt\.(Window\w*|Dialog|Tool|Popup)\b": r"Qt.WindowType.\1",
    r"\bQt\.(TextSelectableByMouse|TextBrowserInteraction|LinksAccessibleByMouse)\b": r"Qt.TextInteractionFlag.\1",
    r"\bQt\.(RichText|PlainText|AutoText|MarkdownText)\b": r"Qt.TextFormat.\1",
    r"\bQt\.(\w+Button)\b": r"Qt.MouseButton.\1",
    r"\bQSizePolicy\.(Fixed|Minimum|Maximum|Preferred|Expanding|MinimumExpanding|Ignored)\b": r"QSizePolicy.Policy.\1",
    r"\bQMessageBox\.(Yes|No|Ok|Cancel|Close|Abort|Retry|Ignore|Save|Discard)\b": r"QMessageBox.StandardButton.\1",
    r"\bQMessageBox\.(Information|Warning|Critical|Question)\b": r"QMessageBox.Icon.\1",
    r"\bQDialogButtonBox\.(Ok|Cancel|Close|Apply|Help|Reset|Yes|No|Save)\b": r"QDialogButtonBox.StandardButton.\1",
    r"\bQAbstractItemView\.(\w+Selection|Select\w+)\b": r"QAbstractItemView.SelectionMode/SelectionBehavior.\1",
    r"\bQHeaderView\.(Stretch|ResizeToContents|Interactive|Fixed)\b": r"QHeaderView.ResizeMode.\1",
    r"\bQFrame\.(StyledPanel|HLine|VLine|NoFrame|Box|Panel|Sunken|Raised|Plain)\b": r"QFrame.Shape/Shadow.\1",
    r"\bQNetworkRequest\.(\w+Attribute)\b": r"QNetworkRequest.Attribute.\1",
    r"\bQNetworkReply\.(NoError|\w+Error)\b": r"QNetworkReply.NetworkError.\1",
    r"\bQIODevice\.(ReadOnly|WriteOnly|ReadWrite|Append|Truncate|Text)\b": r"QIODevice.OpenModeFlag.\1",
    r"\bQVariant\.(Int|Double|String|Bool|LongLong|Date|DateTime|Invalid)\b": r"QMetaType.Type.\1",
    r"\.exec_\(": r"exec(",
    r"\bQRegExp\b": r"QRegularExpression",
    r"\bQDesktopWidget\b": r"QScreen (QGuiApplication.primaryScreen())",
    r"\bQtWidgets\.QAction\b": r"QtGui.QAction (Qt6) with a QtWidgets fallback (Qt5)",
    r"^\s*(?:from|import) PyQt5\b": r"qgis.PyQt",
    r"\bresources_rc\b": r"load icons from their file path (compiled resources do not exist in PyQt6)",
    r"[\"']:/plugins/": r"a file path (Qt resource paths need compiled resources)",
}


def plugin_sources() -> list[Path]:
    """Every .py file that ships with the plugin or runs with QGIS (scripts too), tests excluded."""
    found = []
    for path in sorted(ROOT.rglob("*.py")):
        parts = path.relative_to(ROOT).parts
        if any(p in SKIP_DIRS or p.startswith(".") for p in parts[:-1]):
            continue
        found.append(path)
    return found


def removed_spellings(text: str) -> list[str]:
    """``line: old -> new`` for every removed spelling in a source text."""
    found = []
    for number, line in enumerate(text.splitlines(), 1):
        code = line.split("#", 1)[0] if "resources_rc" not in line else line  # comments are not code
        for pattern, instead in REMOVED.items():
            for match in re.finditer(pattern, code):
                if code[match.end() : match.end() + 1] == ".":
                    continue  # ``Qt.ItemDataRole.UserRole``: the enum itself, already scoped
                found.append(f"{number}: {match.group(0).strip()} -> {match.expand(instead)}")
    return found


def _imported_names(tree: ast.AST) -> dict[str, object]:
    """Names bound by ``from qgis.xxx import Name`` (and ``from qgis.PyQt import QtCore``)."""
    names: dict[str, object] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "qgis":
            try:
                module = importlib.import_module(node.module)
            except ImportError:
                continue
            for alias in node.names:
                value = getattr(module, alias.name, None)
                if value is None:
                    try:
                        value = importlib.import_module(f"{node.module}.{alias.name}")
                    except ImportError:
                        continue
                names[alias.asname or alias.name] = value
    return names


def _resolve(node: ast.AST, names: dict[str, object]):
    if isinstance(node, ast.Name):
        return names.get(node.id)
    if isinstance(node, ast.Attribute):
        parent = _resolve(node.value, names)
        return getattr(parent, node.attr, None) if parent is not None else None
    return None


def _enum_holding(owner: type, member: object) -> str | None:
    """The name of the enum declared in ``owner`` that ``member`` belongs to, if any."""
    kind = type(member)
    if kind in (int, bool, float, str) or not isinstance(member, int) or isinstance(member, type):
        return None
    for name in dir(owner):
        if not name.startswith("_") and getattr(owner, name, None) is kind:
            return name
    return None


def unscoped_enum_members(text: str) -> list[str]:
    """``line: Class.Member -> Class.Enum.Member`` where an enum member is reached through its class.

    Reached through its class instead of its enum: legal in PyQt5 only."""
    tree = ast.parse(text)
    names = _imported_names(tree)
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Attribute):
            continue
        owner = _resolve(node.value, names)
        if not isinstance(owner, type):
            continue
        member = getattr(owner, node.attr, None)
        enum = _enum_holding(owner, member) if member is not None else None
        if enum:
            spelled = ast.unparse(node.value)
            found.append(f"{node.lineno}: {spelled}.{node.attr} -> {spelled}.{enum}.{node.attr}")
    return found


def test_the_scan_covers_the_plugin():
    files = {p.relative_to(ROOT).as_posix() for p in plugin_sources()}
    assert {"plugin.py", "__init__.py", "core/raster.py", "algorithms/base.py", "ui/improve_dialog.py"} <= files
    assert not any(f.startswith("test/") for f in files)


@pytest.mark.parametrize(
    "snippet, expected",
    [
        ("bar.pushMessage('x', 'y', Qgis.Success, 5)", "Qgis.MessageLevel.Success"),
        ("QgsProcessingParameterNumber.Double", "QgsProcessingParameterNumber.Type.Double"),
        ("QgsProcessingParameterFile.File", "QgsProcessingParameterFile.Behavior.File"),
        (
            "p.flags() | QgsProcessingParameterDefinition.FlagAdvanced",
            "QgsProcessingParameterDefinition.Flag.FlagAdvanced",
        ),
        ("w.setFilters(QgsMapLayerProxyModel.RasterLayer)", "QgsMapLayerProxyModel.Filter.RasterLayer"),
        ("w.setStorageMode(QgsFileWidget.SaveFile)", "QgsFileWidget.StorageMode.SaveFile"),
        ("label.setAlignment(Qt.AlignLeft)", "Qt.AlignmentFlag.AlignLeft"),
        ("dialog.exec_()", "exec("),
        ("from . import resources_rc", "compiled resources"),
        ("QIcon(':/plugins/cloud_mask_improver/icon.svg')", "a file path"),
    ],
)
def test_each_removed_spelling_is_found(snippet, expected):
    found = removed_spellings(snippet)
    assert found and expected in found[0], found
    scoped = removed_spellings(
        snippet.replace("Qgis.Success", "Qgis.MessageLevel.Success")
        .replace(".Double", ".Type.Double")
        .replace("Qt.AlignLeft", "Qt.AlignmentFlag.AlignLeft")
    )
    if "Success" in snippet or "Double" in snippet or "AlignLeft" in snippet:
        assert not scoped, scoped


def test_unlisted_unscoped_enums_are_found_by_lookup():
    text = (
        "from qgis.PyQt.QtCore import Qt\nfrom qgis.PyQt.QtWidgets import QSizePolicy\n"
        "from qgis.core import QgsTask\n"
        "a = Qt.ElideRight\nb = QSizePolicy.Expanding\nc = QgsTask.CanCancel\n"
        "d = Qt.TextElideMode.ElideRight\ne = QgsTask.Flag.CanCancel\n"
    )
    found = unscoped_enum_members(text)
    assert [f.split(" -> ")[1] for f in found] == [
        "Qt.TextElideMode.ElideRight",
        "QSizePolicy.Policy.Expanding",
        "QgsTask.Flag.CanCancel",
    ], found


@pytest.mark.parametrize("path", plugin_sources(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_no_qt5_only_spelling(path):
    text = path.read_text(encoding="utf-8")
    found = removed_spellings(text) + unscoped_enum_members(text)
    assert not found, f"{path.relative_to(ROOT)} uses spellings PyQt6 removed:\n" + "\n".join(sorted(set(found)))


def test_no_compiled_resources():
    """Icons load from their files: resources.qrc only lists them (test_resources.py).

    No resources_rc.py, no pyrcc5 in setup or the zip."""
    assert [p.name for p in ROOT.glob("*.qrc")] == ["resources.qrc"]
    assert not list(ROOT.glob("*_rc.py"))
    for script in ("scripts/setup.sh", "scripts/zip.sh"):
        assert "pyrcc" not in (ROOT / script).read_text(), script
    assert "resources_rc" not in (ROOT / "scripts" / "zip.sh").read_text()


def test_metadata_declares_qt6_support():
    lines = (ROOT / "metadata.txt").read_text(encoding="utf-8").splitlines()
    assert "supportsQt6=True" in lines


def test_qgis_4_offers_and_loads_the_plugin_by_its_own_version_rule(qgis_app):
    """QGIS 4's plugin installer offers and loads the plugin, by the installer's own version rule.

    The installer (pyplugin_installer, the same code in 3.x and 4.x) takes an absent
    qgisMaximumVersion as "<major of the minimum>.99", i.e. 3.99, and neither offers nor loads
    the plugin on a newer QGIS. Run its own comparison on metadata.txt as it reads it."""
    import sys

    from qgis.core import QgsApplication

    python = str(Path(QgsApplication.pkgDataPath()) / "python")  # where QGIS keeps pyplugin_installer
    if python not in sys.path:
        sys.path.append(python)
    from pyplugin_installer.version_compare import isCompatible

    meta = configparser.ConfigParser()
    meta.read(ROOT / "metadata.txt", encoding="utf-8")
    minimum = meta["general"]["qgisMinimumVersion"]
    maximum = meta["general"].get("qgisMaximumVersion", "").strip() or minimum[0] + ".99"
    for qgis in ("3.22.16", "3.40.6", "3.44.15", "4.0.0", "4.2.1"):
        assert isCompatible(qgis, minimum, maximum), qgis
    assert not isCompatible("3.16.0", minimum, maximum)
