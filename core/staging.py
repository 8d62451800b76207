"""Outputs that appear only when complete: write beside the target, then rename.

Every file the plugin writes (masks, probabilities, installed models, downloads,
the sample data) is first written under a hidden temporary name in the target's
own folder and moved onto the target with ``os.replace``, which is atomic and
overwrites: a reader sees the old file or the complete new one, never half of
one, and a failed or cancelled run leaves nothing behind.

Windows refuses to replace or delete a file that a program has open (a layer
loaded in QGIS, a CSV open in a spreadsheet). :func:`swap` and :func:`remove`
turn that refusal into a :class:`FileInUseError` that names the file and says
what to do, instead of a bare ``PermissionError``.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from .errors import RUN_AGAIN, FileInUseError, OutputError
from .raster import require_geotiff_name

IN_FOLDER = "Then run again, or choose another output folder."
INSTALL_AGAIN = "Then install the model again (or restart QGIS first)."


def partial_path(destination: str | os.PathLike, suffix: str = ".tif") -> str:
    """A fresh hidden name beside the destination (same folder, so the rename is atomic)."""
    folder, name = os.path.split(os.path.abspath(destination))
    return os.path.join(folder, f".{name}.partial-{uuid.uuid4().hex[:8]}{suffix}")


def remove(path: str | os.PathLike, then: str = RUN_AGAIN) -> None:
    """Remove a file that may not exist; one that a program holds open is named (FileInUseError)."""
    try:
        os.remove(path)
    except FileNotFoundError:
        pass
    except PermissionError as err:
        raise FileInUseError(path, err, then, "Cannot delete") from err


def discard(path: str | os.PathLike) -> None:
    """Remove our own temporary file if it is there; a failure must not hide the error being handled."""
    with suppress(OSError):
        os.remove(path)


def swap(tmp: str | os.PathLike, target: str | os.PathLike, then: str = RUN_AGAIN) -> None:
    """Move a complete temporary file onto ``target`` (atomic); a target in use is named."""
    try:
        os.replace(tmp, target)
    except PermissionError as err:
        raise FileInUseError(target, err, then) from err


def check_replaceable(path: str | os.PathLike, then: str = RUN_AGAIN) -> None:
    """Refuse, before any work, an existing file that could not be replaced at the end.

    There is no portable way to ask whether a program holds a file open, so the file is
    renamed to a hidden name and straight back: exactly what Windows refuses for a file in use.
    """
    if not os.path.isfile(path):
        return
    aside = partial_path(path, ".probe")
    try:
        os.rename(path, aside)
    except PermissionError as err:
        raise FileInUseError(path, err, then) from err
    os.rename(aside, path)


@contextmanager
def replacing(target: str | os.PathLike, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temporary path beside ``target``, moved onto ``target`` when the block completes.

    When the block fails it is removed. The caller creates the file."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(partial_path(target, suffix))
    try:
        yield tmp
        swap(tmp, target)
    finally:
        discard(tmp)


@contextmanager
def atomic_outputs() -> Iterator[list[tuple[str, str]]]:
    """Collect ``(temporary, destination)`` pairs; rename them all when the block completes, else delete them.

    Renames put each onto its destination. If a later rename fails, the outputs already renamed by
    this run are removed too: a run leaves all its outputs or none.
    """
    pending: list[tuple[str, str]] = []
    committed: list[str] = []
    try:
        yield pending
        for tmp, final in pending:
            _commit(tmp, final)
            committed.append(final)
    except BaseException:
        for final in committed:
            discard(final)
            discard(final + ".aux.xml")
        raise
    finally:
        for tmp, _ in pending:
            discard(tmp)
            discard(tmp + ".aux.xml")


def stage(pending: list[tuple[str, str]], final: str) -> str:
    """Register ``final`` with :func:`atomic_outputs` and return its temporary path.

    It has the same extension: GDAL picks the format by it."""
    pending.append((partial_path(final, os.path.splitext(final)[1] or ".tif"), final))
    return pending[-1][0]


def _commit(tmp: str, final: str) -> None:
    try:
        swap(tmp, final)
        # A stale sidecar would describe the old raster (statistics, categories).
        if os.path.exists(tmp + ".aux.xml"):
            swap(tmp + ".aux.xml", final + ".aux.xml")
        else:
            remove(final + ".aux.xml")
    except FileInUseError:
        raise
    except OSError as err:
        raise OutputError(
            f"Cannot write the output '{final}': {err.strerror or err}. If another program "
            "has it open, close it there (or remove the layer from the project) and run "
            "again, or choose another output path."
        ) from err


def check_destination(destination: str, inputs: list[str]) -> None:
    """Refuse, before any work, an output that cannot be written or that would overwrite one of the run's inputs."""
    folder = os.path.dirname(os.path.abspath(destination)) or "."
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise OutputError(f"The output folder '{folder}' is a file, not a folder: choose another output path.")
    if not os.path.isdir(folder):
        raise OutputError(f"The output folder '{folder}' does not exist. Create it or choose another output path.")
    if os.path.isdir(destination):
        raise OutputError(f"The output '{destination}' is a folder. Give a file name such as mask.tif.")
    for source in inputs:
        if source and os.path.exists(source) and os.path.exists(destination) and os.path.samefile(source, destination):
            raise OutputError(
                f"The output '{destination}' is also an input of this run. Choose a different output path."
            )
    # Permission bits do not tell (root, read-only mounts, special folders): try it.
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".cloudmask-probe-"):
            pass
    except OSError as err:
        raise OutputError(
            f"The output folder '{folder}' is not writable ({err.strerror or err}). "
            "Choose an output path you can write to."
        ) from err
    check_replaceable(destination)  # a file in use would fail only after the whole run


def require_distinct(outputs: list[str]) -> None:
    """Two outputs on one path: the later rename would silently replace the earlier output."""
    seen: dict[str, str] = {}
    for path in outputs:
        key = os.path.normcase(os.path.abspath(path))
        if key in seen:
            raise OutputError(f"Two outputs are the same file '{path}'. Give each output its own path.")
        seen[key] = path


def check_outputs(outputs: list[str], inputs: list[str]) -> None:
    """Refuse, before any work, outputs that cannot all be written as this run's GeoTIFFs.

    Each must be writable, must not overwrite an input, must have a GeoTIFF's name, and no
    two may share a path: the checks every run makes of its outputs, in one place."""
    for path in outputs:
        check_destination(path, inputs)
        require_geotiff_name(path)
    require_distinct(outputs)
