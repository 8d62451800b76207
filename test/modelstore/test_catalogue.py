"""Finding models: ids, paths, and refusing a file that is not the one its card describes."""

import hashlib
from pathlib import Path

import pytest
from onnx_models import write_card

from cloud_mask_improver.core.modelstore import catalogue
from cloud_mask_improver.core.modelstore.cards import CardError


def test_an_installed_model_that_is_not_its_cards_file_is_refused(tmp_path):
    (tmp_path / "mine.onnx").write_bytes(b"the file as published")
    write_card(tmp_path / "mine.json", id="mine", sha256=hashlib.sha256(b"the file as published").hexdigest())
    card, path = catalogue.resolve("mine", tmp_path)
    assert card.id == "mine" and path == tmp_path / "mine.onnx"
    (tmp_path / "mine.onnx").write_bytes(b"a damaged or different file")
    with pytest.raises(CardError, match="sha256 differs") as refused:
        catalogue.resolve("mine", tmp_path)
    assert MANAGER in str(refused.value)  # where to reinstall it


# The plugin's menu is under Raster (plugin.py adds it with addPluginToRasterMenu): the messages
# must send users there, not to a Plugins menu where it is not.
MANAGER = "Raster > Cloud Mask Improver > Manage models…"


def test_a_missing_model_says_where_to_install_it(tmp_path):
    write_card(tmp_path / "mine.json", id="mine", sha256="0" * 64)
    with pytest.raises(catalogue.ModelNotFound, match="is not installed") as missing:
        catalogue.resolve("mine", tmp_path)
    assert MANAGER in str(missing.value) and "make setup" in str(missing.value)
    source = (Path(catalogue.__file__).parents[2] / "plugin.py").read_text(encoding="utf-8")
    assert "addPluginToRasterMenu" in source and 'MENU = "Cloud Mask Improver"' in source


def test_a_path_with_a_folder_is_a_file_not_an_id(tmp_path):
    with pytest.raises(catalogue.ModelNotFound, match="does not exist"):
        catalogue.resolve(str(tmp_path / "nothing" / "here"), tmp_path)


INSTALLED_MESSAGES = r"""
import hashlib, sys
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from cloud_mask_improver.core.modelstore import catalogue as models
from cloud_mask_improver.core.modelstore.cards import CardError
folder = Path(sys.argv[2])
assert models.__file__.startswith(sys.argv[1]), models.__file__
card = Path(sys.argv[1]) / "cloud_mask_improver" / "models" / "ukis-6b-l2a.json"
(folder / "damaged").mkdir()
(folder / "damaged" / "ukis-6b-l2a.json").write_bytes(card.read_bytes())
(folder / "damaged" / "ukis-6b-l2a.onnx").write_bytes(b"a damaged file")
for call in (lambda: models.resolve("ukis-6b-l2a", folder / "empty"),
             lambda: models.resolve("ukis-6b-l2a", folder / "damaged"),
             lambda: models.default_cloud_models("L2A", False, models_dir=folder / "empty")):
    try:
        call()
    except (models.ModelNotFound, CardError) as error:
        print(error)
"""


def test_an_installed_plugin_names_the_model_manager_not_the_developer_setup(tmp_path):
    """The zip users install has no 'make setup': its messages send them to the model manager only."""
    import subprocess
    import sys
    import zipfile

    sys.path.insert(0, str(ROOT / "scripts"))
    import build_zip

    plugin = tmp_path / "plugins"
    with zipfile.ZipFile(build_zip.build(tmp_path / "plugin.zip", release=False)) as archive:
        archive.extractall(plugin)
    (tmp_path / "empty").mkdir()
    done = subprocess.run(
        [sys.executable, "-c", INSTALLED_MESSAGES, str(plugin), str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    messages = done.stdout.strip().splitlines()
    assert len(messages) == 3, done.stdout
    for message in messages:
        assert MANAGER in message and "make setup" not in message, message
    assert "sha256 differs" in messages[1]


ROOT = Path(__file__).resolve().parents[2]
