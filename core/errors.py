"""The errors for problems a user can fix, all of them.

Every error the engine raises on purpose, for an input, a setting, a model or a
download the user can change, derives from :class:`CloudMaskError`, and its
message names the problem and the fix. The Processing layer shows exactly these
messages to the user. Anything else that escapes the engine is a bug: the user
gets a short message and the full traceback goes to the log for the report.

They are all declared here, so that this file is the list of what can go wrong
for a user; the modules that raise them import them from here.

The subclasses keep their historical second base (``ValueError``,
``LookupError``, ``RuntimeError``) so that code catching those still works;
nothing should *rely* on it: catch ``CloudMaskError``.
"""

from __future__ import annotations

import os

RUN_AGAIN = "Then run again, or choose another output path."


class CloudMaskError(Exception):
    """A problem the user can fix; the message says what it is and what to do."""


class SettingsError(CloudMaskError, ValueError):
    """A run setting (threshold, dilation, kind ...) is outside what is allowed."""


# Inputs


class RasterError(CloudMaskError, ValueError):
    """A raster cannot be used as given; the message says why and what to do."""


class BandError(CloudMaskError, ValueError):
    """The raster's bands cannot feed the model; the message says what to do."""


class ProductError(RasterError):
    """A path looks like a Sentinel-2 product but cannot be used; the message says why."""


class NoProductMask(ProductError):
    """The product has no raster mask (L1C before baseline 04.00 has only a GML one)."""


class InputError(RasterError):
    """An input names nothing that can be processed; the message says what was given."""


class AreaError(RasterError):
    """The area cannot be used (unreadable, no polygons, outside the raster); the message says why."""


class MaskInputError(RasterError):
    """The mask or the raster cannot be used for masking; the message says why and what to do."""


# Models


class ModelNotFound(CloudMaskError, LookupError):
    """No such model is installed; the message says how to install it."""


class CardError(CloudMaskError, ValueError):
    """A card is malformed, or does not match its model file."""


class ModelError(CloudMaskError, RuntimeError):
    """A model file cannot be loaded or does not behave as its card says."""


class FetchError(CloudMaskError, RuntimeError):
    """A pinned file could not be had, or its checksum did not match."""


# Outputs


class OutputError(CloudMaskError, ValueError):
    """An output path cannot be written; the message says why and what to do."""


class FileInUseError(OutputError):
    """A file could not be replaced or deleted, typically because a program has it open."""

    def __init__(
        self, path: str | os.PathLike, err: OSError, then: str = RUN_AGAIN, what: str = "Cannot write the output"
    ):
        self.path = str(path)
        self.reason = err.strerror or str(err)
        super().__init__(
            f"{what} '{self.path}': {self.reason}. On Windows a file that a program has open cannot be "
            "replaced or deleted: if it is loaded in QGIS, remove that layer from the "
            "project; if another program has it open (a spreadsheet, an image viewer), close it there. " + then
        )


class SummaryInUseError(OutputError):
    """Summary files that could not be replaced; every other output of the batch is written."""

    def __init__(self, errors: list[FileInUseError]):
        self.paths = [e.path for e in errors]
        names = ", ".join(f"'{p}'" for p in self.paths)
        super().__init__(
            f"The masks are written, but the summary could not replace {names}: {errors[0].reason}. "
            "On Windows a file that a program has open cannot be replaced: if it is loaded in QGIS, "
            "remove that layer from the project; if a spreadsheet has it open, close it there. Then run "
            "again (the masks already made are kept, so only the summary is written), or choose another "
            "output folder."
        )
