"""Words users read name things they know: FarmVibes.AI, never our internal word "seed"."""

from __future__ import annotations

import re
from pathlib import Path

from cloud_mask_improver.core.modelstore.cards import all_cards
from cloud_mask_improver.core.runtime import home

ROOT = Path(__file__).resolve().parent.parent
JARGON = re.compile(r"\bseeds?\b|\bseed's\b|\bseed-", re.IGNORECASE)


def algorithm_texts(algorithm) -> str:
    parts = [algorithm.displayName(), algorithm.shortHelpString() or ""]
    for parameter in algorithm.parameterDefinitions():
        parts += [parameter.description(), parameter.help()]
    parts += [output.description() for output in algorithm.outputDefinitions()]
    return "\n".join(parts)


def test_no_internal_jargon_in_what_users_read(provider):
    texts = {name: (ROOT / name).read_text(encoding="utf-8") for name in ("README.md", "metadata.txt")}
    for path in sorted((ROOT / "docs").glob("*.md")):
        texts[str(path.relative_to(ROOT))] = path.read_text(encoding="utf-8")
    for card in all_cards(home.models_dir()).values():
        texts[f"model card {card.id}"] = f"{card.title}\n{card.description}\n{card.credit}"
    for algorithm in provider.algorithms():
        texts[algorithm.id()] = algorithm_texts(algorithm)
    for path in sorted((ROOT / "ui").glob("*.py")):  # the dialogs' own words
        texts[str(path.relative_to(ROOT))] = path.read_text(encoding="utf-8")
    found = {name: JARGON.findall(text) for name, text in texts.items() if JARGON.search(text)}
    assert not found, found
    assert len([n for n in texts if n.startswith("cloudmask:")]) >= 8  # the shipped models are included


def test_the_about_text_and_readme_say_how_onnxruntime_gets_installed(qgis_app, tmp_path):
    from cloud_mask_improver.ui.improve_dialog import ImproveDialog
    from cloud_mask_improver.ui.model_manager import ModelManagerDialog

    dialogs = [ImproveDialog(models_dir=tmp_path), ModelManagerDialog(models_dir=tmp_path, cache=tmp_path)]
    buttons = {dialog.runtime_button.text() for dialog in dialogs}
    assert buttons == {"Install onnxruntime"}
    for name in ("README.md", "metadata.txt"):
        text = (ROOT / name).read_text(encoding="utf-8")
        assert "first use" not in text, name  # nothing is installed behind the user's back
        assert "Install onnxruntime" in text, name
