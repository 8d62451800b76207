"""Windows file semantics on Linux: a file that a program has open cannot be replaced, renamed or deleted.

On Windows, QGIS (through GDAL and SQLite) keeps the files of its loaded layers open, and a
spreadsheet keeps an open CSV open, without sharing delete access: ``os.replace`` onto such a
file, renaming it or deleting it fails with ``PermissionError`` [WinError 32] "The process
cannot access the file because it is being used by another process". Linux allows all of it,
so tests emulate it: a file is *in use* while it is the source of a layer in
``QgsProject.instance()`` ("loaded in the project") or while a test says it is held open
(``FilesInUse.hold``, "open in another program").

Patched: ``os.replace``, ``os.rename``, ``os.remove``, ``os.unlink`` (so also ``Path.replace``,
``Path.rename``, ``Path.unlink`` and ``shutil.move``, which call them), opening for writing
(``open``, ``io.open``: a spreadsheet locks the file it shows; writing into a loaded layer's file
would change it under QGIS) and GDAL's own ``gdal.Unlink``, ``gdal.Rename``, ``Driver.Delete``
and ``Driver.Rename``. The plugin's code calls none of GDAL's today; they are refused too so
that a future use is caught.

``install()`` works without pytest, for a subprocess (the ``cloudmask`` command): it reads the
held paths from ``IN_USE_ENV`` (``os.pathsep``-separated).
"""

from __future__ import annotations

import builtins
import io
import os

from osgeo import gdal

IN_USE_ENV = "CLOUDMASK_TEST_FILES_IN_USE"
WINDOWS_MESSAGE = "The process cannot access the file because it is being used by another process"


def _key(path) -> str:
    return os.path.normcase(os.path.abspath(os.fspath(path)))


class FilesInUse:
    """Which files are in use now: held by a test, or the source of a layer of the project."""

    def __init__(self, project: bool = True):
        self.held: set[str] = set()
        self.project = project
        self.refused: list[tuple[str, str]] = []  # (operation, path): what the code tried

    def hold(self, *paths) -> None:
        """Open in another program (a spreadsheet, a viewer) until ``release``."""
        self.held.update(_key(p) for p in paths)

    def release(self, *paths) -> None:
        self.held.difference_update(_key(p) for p in paths)

    def loaded(self) -> set[str]:
        if not self.project:
            return set()
        from qgis.core import QgsProject

        sources = (layer.source().split("|")[0] for layer in QgsProject.instance().mapLayers().values())
        return {_key(s) for s in sources if s}

    def in_use(self, path) -> bool:
        if isinstance(path, int) or path is None:
            return False
        key = _key(path)
        return key in self.held or key in self.loaded()

    def check(self, operation: str, *paths) -> None:
        for path in paths:
            if self.in_use(path):
                self.refused.append((operation, os.fspath(path)))
                raise PermissionError(13, WINDOWS_MESSAGE, os.fspath(path))


def _patches(files: FilesInUse) -> dict:
    """(owner, name) -> replacement, each refusing a file in use and otherwise doing the real thing."""
    real_replace, real_rename, real_remove, real_open = os.replace, os.rename, os.remove, io.open

    def replace(src, dst, **kwargs):
        files.check("replace", src, dst)
        return real_replace(src, dst, **kwargs)

    def rename(src, dst, **kwargs):
        files.check("rename", src, dst)
        return real_rename(src, dst, **kwargs)

    def remove(path, **kwargs):
        if kwargs.get("dir_fd") is None:  # shutil.rmtree deletes by name within a folder: not ours
            files.check("delete", path)
        return real_remove(path, **kwargs)

    def open_file(file, mode="r", *args, **kwargs):
        if isinstance(file, (str, bytes, os.PathLike)) and set(mode) & set("wax+"):
            files.check("write", file)
        return real_open(file, mode, *args, **kwargs)

    def gdal_call(operation, real, *checked):
        def call(*args):
            files.check(operation, *(args[i] for i in checked))
            return real(*args)

        return call

    driver = gdal.Driver
    return {
        (builtins, "open"): open_file,
        (io, "open"): open_file,
        (os, "replace"): replace,
        (os, "rename"): rename,
        (os, "remove"): remove,
        (os, "unlink"): remove,
        (gdal, "Unlink"): gdal_call("delete", gdal.Unlink, 0),
        (gdal, "Rename"): gdal_call("rename", gdal.Rename, 0, 1),
        (driver, "Delete"): gdal_call("delete", driver.Delete, 1),
        (driver, "Rename"): gdal_call("rename", driver.Rename, 1, 2),
    }


def install(files: FilesInUse | None = None) -> FilesInUse:
    """Patch for good (a subprocess): the paths in ``IN_USE_ENV`` are held open."""
    files = files or FilesInUse(project=False)
    files.hold(*[p for p in os.environ.get(IN_USE_ENV, "").split(os.pathsep) if p])
    for (owner, name), replacement in _patches(files).items():
        setattr(owner, name, replacement)
    return files


def patch(monkeypatch) -> FilesInUse:
    """For the ``windows_files`` fixture (conftest.py): undone after the test."""
    files = FilesInUse()
    for (owner, name), replacement in _patches(files).items():
        monkeypatch.setattr(owner, name, replacement)
    return files
