"""Installing a model from its pinned archive: the member the card names, whole or not at all."""

import io
import shutil
import tarfile
from dataclasses import replace

import pytest
from samples import model_file

from cloud_mask_improver.core.errors import FetchError
from cloud_mask_improver.core.modelstore import installer
from cloud_mask_improver.core.modelstore.cards import CARDS_DIR, Source, load_card, sha256_of
from cloud_mask_improver.core.runtime import home

MODEL = "ukis-6b-l1c"
MEMBER = "ukis_csmask/model_6b_l1c.onnx"  # as a card names it: inside the package, no release folder


def _card(member=MEMBER):
    card = load_card(CARDS_DIR / f"{MODEL}.json")
    return replace(card, source=Source("ukis-csmask", "1.0", "ukis-csmask-1.0.tar.gz", "", sdist=True, member=member))


def _sdist(path, members: dict):
    """A source release as PyPI serves it: every file under the release's own folder."""
    with tarfile.open(path, "w:gz") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            if data is None:
                info.type = tarfile.DIRTYPE
                tf.addfile(info)
            else:
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
    return path


def test_the_member_under_the_releases_folder_is_installed_and_verifies(tmp_path):
    network = model_file(MODEL).read_bytes()
    archive = _sdist(
        tmp_path / "release.tar.gz",
        {
            "ukis-csmask-1.0/other_ukis_csmask/model_6b_l1c.onnx": b"not at a folder boundary",
            f"ukis-csmask-1.0/{MEMBER}": network,
        },
    )
    models = tmp_path / "models"
    installed = installer.install(_card(), models, log=lambda _: None, archive=archive)
    assert installed == models / _card().file
    assert sha256_of(installed) == sha256_of(model_file(MODEL))
    assert installer.is_installed(_card(), models)


@pytest.mark.parametrize(
    ("members", "said"),
    [
        ({"ukis-csmask-1.0/README.md": b"no model here"}, f"has no member {MEMBER}"),
        ({f"ukis-csmask-1.0/{MEMBER}": None}, f"{MEMBER} is not a file"),
    ],
    ids=["member-missing", "member-is-a-folder"],
)
def test_an_archive_without_the_model_is_refused_and_leaves_nothing(tmp_path, members, said):
    archive = _sdist(tmp_path / "release.tar.gz", members)
    models = tmp_path / "models"
    with pytest.raises(FetchError, match=said):
        installer.install(_card(), models, log=lambda _: None, archive=archive)
    assert not list(models.iterdir())


def test_removing_a_model_removes_its_optimised_copies(tmp_path, monkeypatch):
    """Each copy is up to twice the network (80 MB for ukis): Remove in the manager frees it too.

    Another model's whose name starts the same stays; and removing a model from a folder other
    than the data home's leaves the data home's copies alone."""
    network = model_file(MODEL)  # from the real data home, before it is moved
    monkeypatch.setenv("CLOUDMASK_HOME", str(tmp_path / "home"))
    card = load_card(CARDS_DIR / f"{MODEL}.json")
    installed = home.models_dir() / card.file
    installed.parent.mkdir(parents=True)
    shutil.copy(network, installed)
    copies = [home.optimized_copy(installed, key) for key in ("onnxruntime 1.32", "onnxruntime 1.31")]
    other_model = home.optimized_dir() / f"{installed.stem}-mine-{'a' * 20}.onnx"
    for path in (*copies, other_model):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"an optimised network")

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.copy(installed, elsewhere / card.file)
    installer.remove(card, elsewhere)
    assert all(p.exists() for p in copies)

    installer.remove(card)
    assert not installed.exists()
    assert list(home.optimized_dir().iterdir()) == [other_model]
