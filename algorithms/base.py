"""What the cloudmask algorithms share: parameters, feedback and errors.

The algorithms are thin: they read parameters and call ``core``. Engine
errors become ``QgsProcessingException`` with the engine's message, which
names the problem and the fix; nothing reaches the user as a traceback.

QGIS imports the algorithms and builds their parameters at every start (the
toolbox, ``qgis_process list``), whether or not anyone runs them. So the
engine's names are read as ``core.X`` inside the methods that run (``core``, the
public API, imports a name's module on its first use: numpy, SciPy, GDAL's arrays,
onnxruntime come with them), and what a module takes at import comes from
numpy-free modules only (``choices``, ``decision``, ``errors``, ``progress``):
enabling the plugin must not slow QGIS's start.
"""

from __future__ import annotations

import math
import os
import threading
import traceback

from qgis.core import (
    Qgis,
    QgsMessageLog,
    QgsProcessingAlgorithm,
    QgsProcessingException,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterEnum,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterString,
)
from qgis.PyQt.QtCore import QCoreApplication, QThread
from qgis.PyQt.QtGui import QIcon

from .. import core
from ..core import (
    DEFAULTS,
    FARMVIBES_CLOUD_THRESHOLD,
    FARMVIBES_SHADOW_THRESHOLD,
    OUTPUT_MODES,
    PRODUCT_KINDS,
    PROVIDERS,
    Cancelled,
    CloudMaskError,
    Feedback,
    choices,
)

LOG_TAG = "Cloud Mask Improver"
ICON = os.path.join(os.path.dirname(os.path.dirname(__file__)), "icons", "icon.svg")
CANCELLED = "Cancelled: no output was written."


class QgisFeedback(Feedback):
    def __init__(self, feedback):
        self.feedback = feedback

    def progress(self, fraction: float) -> None:
        if self.feedback:
            self.feedback.setProgress(100.0 * fraction)

    def cancelled(self) -> bool:
        return bool(self.feedback and self.feedback.isCanceled())


class CancelledRun(Exception):
    """The user cancelled: the algorithm ends quietly (see ``CloudMaskAlgorithm``)."""


def _ends_quietly_when_cancelled(process):
    """A cancel is what the user asked for, not an error.

    In a task (the toolbox, the plugin's dialog) QGIS logs a raised exception twice as
    Critical: there the algorithm says it once, as information, and ends with no outputs
    (the task reports itself cancelled). Called directly (``processing.run``,
    ``qgis_process``) it raises, as a script expects.
    """

    def wrapper(self, parameters, context, feedback):
        try:
            return process(self, parameters, context, feedback)
        except CancelledRun as err:
            if QThread.currentThread() is QCoreApplication.instance().thread():
                raise QgsProcessingException(CANCELLED) from err
            if feedback is not None:
                feedback.pushInfo(CANCELLED)
            context.setLayersToLoadOnCompletion({})  # nothing was written: nothing to load
            return {}

    return wrapper


def run_engine(call, feedback):
    """Call the engine and turn its errors into messages a user can act on.

    The engine leaves no output behind when it fails, so every message can say
    so. An error we did not foresee is a bug: its traceback goes to the message
    log for the bug report, never into the message the user reads.
    """
    try:
        return call(QgisFeedback(feedback))
    except Cancelled as err:
        raise CancelledRun from err
    except CloudMaskError as err:  # a problem the user can fix: the message says how
        raise QgsProcessingException(str(err)) from err
    except MemoryError as err:
        raise QgsProcessingException(
            "Out of memory; no output was written. Turn off 'Load the whole raster "
            "in memory' or use a coarser processing resolution."
        ) from err
    except OSError as err:
        raise QgsProcessingException(
            f"Cannot read or write a file: {err}. No output was written. Check the "
            "paths, the free disk space and the permissions."
        ) from err
    except Exception as err:
        QgsMessageLog.logMessage(traceback.format_exc(), LOG_TAG, Qgis.MessageLevel.Critical)
        raise QgsProcessingException(
            f"Unexpected error ({type(err).__name__}: {err}); no output was written. Please report it with "
            f"the details from View > Panels > Log Messages, tab '{LOG_TAG}'."
        ) from err


def _number_problem(label: str, value, low: float, high: float) -> str:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return ""  # an expression or property: QGIS evaluates and checks it
    bounded = high < 1e300
    if not math.isnan(number) and low <= number and (not bounded or number <= high):
        return ""
    allowed = f"between {low:g} and {high:g}" if bounded else f"{low:g} or more"
    return f"{label} is {number:g}; it must be {allowed}."


def source_path(layer) -> str:
    """GDAL source of a raster layer (``/vsizip/`` and subdataset URIs are legal)."""
    return layer.source().split("|")[0] if layer is not None else ""


def work_dir() -> str:
    """Where core writes a product's VRT stack: the Processing temporary folder."""
    from qgis.core import QgsProcessingUtils

    return QgsProcessingUtils.tempFolder()


def with_help(parameter, text: str):
    """A parameter with a short label (QGIS does not wrap labels) and the details as its tooltip."""
    parameter.setHelp(text)
    return parameter


# Our algorithms running now, in any thread: (thread id, feedback) by run. The plugin's unload
# cancels them and waits until each has returned (``stop_runs``): QGIS deletes the provider right
# after unload, and on Exit ends the process, while a task's thread may still be in our code.
_RUNS: dict[object, tuple[int, object]] = {}
_RUNS_CHANGED = threading.Condition()


def _counted(process):
    """Record the run while ``processAlgorithm`` executes (see ``stop_runs``)."""

    def wrapper(self, parameters, context, feedback):
        key = object()
        with _RUNS_CHANGED:
            _RUNS[key] = (threading.get_ident(), feedback)
        try:
            return process(self, parameters, context, feedback)
        finally:
            with _RUNS_CHANGED:
                del _RUNS[key]
                _RUNS_CHANGED.notify_all()

    return wrapper


def running() -> int:
    """How many runs of our algorithms are executing now (any thread)."""
    with _RUNS_CHANGED:
        return len(_RUNS)


def stop_runs(timeout: float = 30.0) -> bool:
    """Cancel every run of our algorithms in other threads and wait until each has returned.

    Waiting sleeps on a condition, which releases Python's lock, so the runs' threads can
    reach their next cancellation check (a tile) and return. False when ``timeout`` seconds
    passed first. A run in this thread (further up the stack) cannot be waited for.
    """
    here = threading.get_ident()
    with _RUNS_CHANGED:
        for thread, feedback in _RUNS.values():
            if thread != here and feedback is not None:
                feedback.cancel()
        return _RUNS_CHANGED.wait_for(lambda: all(t == here for t, _ in _RUNS.values()), timeout)


class CloudMaskAlgorithm(QgsProcessingAlgorithm):
    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "processAlgorithm" in cls.__dict__:
            cls.processAlgorithm = _counted(_ends_quietly_when_cancelled(cls.__dict__["processAlgorithm"]))

    def createInstance(self):
        return type(self)()

    def group(self):
        return ""

    def groupId(self):
        return ""

    def icon(self):
        return QIcon(ICON)

    def tr(self, text):
        return text

    def checkParameterValues(self, parameters, context):
        """Say what a refused value is, what is allowed, and which input cannot be opened.

        QGIS's own refusal only names the parameter ("Incorrect parameter value for DILATION").

        A Sentinel-2 product is a legal raster input that QGIS cannot open as a layer:
        its metadata is checked here (cheap), and core makes its stack when the run is
        planned; QGIS's own check sees the other parameters only.
        """
        products = {k for k, v in parameters.items() if self._is_product_value(k, v)}
        for name in products:
            try:
                core.read_product(parameters[name])
            except CloudMaskError as err:
                return False, f"{self.parameterDefinition(name).description()} ({name}): {err}"
        passed_on = products | {k for k, v in parameters.items() if self._is_gdal_source(k, v, context)}
        for definition in self.parameterDefinitions():
            problem = "" if definition.name() in passed_on else self._value_problem(definition, parameters, context)
            if problem:
                return False, problem
        if not passed_on:
            return super().checkParameterValues(parameters, context)
        for definition in self.parameterDefinitions():
            name = definition.name()
            if name not in passed_on and not definition.checkValueIsAcceptable(parameters.get(name), context):
                return False, f"Incorrect parameter value for {definition.description()} ({name})."
        return True, ""

    def _is_product_value(self, name, value) -> bool:
        return (
            isinstance(value, str)
            and isinstance(self.parameterDefinition(name), QgsProcessingParameterRasterLayer)
            and core.is_product(value)
        )

    def _is_gdal_source(self, name, value, context) -> bool:
        """A raster GDAL opens but QGIS 3.22 does not load from a string.

        ``/vsizip/`` paths, ``GPKG:file.gpkg:table``, subdatasets (later QGIS versions load them).
        Passed on to core as it is, as a product is; QGIS's own check would refuse it as unreadable."""
        return (
            isinstance(value, str)
            and isinstance(self.parameterDefinition(name), QgsProcessingParameterRasterLayer)
            and self.parameterAsRasterLayer({name: value}, name, context) is None
            and core.opens_as_raster(value)
        )

    def _value_problem(self, definition, parameters, context) -> str:
        name = definition.name()
        value = parameters.get(name)
        if value is None or value == "":
            return ""
        label = f"{definition.description()} ({name})"
        if isinstance(definition, QgsProcessingParameterNumber):
            return _number_problem(label, value, definition.minimum(), definition.maximum())
        if (
            isinstance(definition, QgsProcessingParameterRasterLayer)
            and isinstance(value, str)
            and self.parameterAsRasterLayer(parameters, name, context) is None
        ):
            if core.zip_problem(value):
                return f"{label}: {core.zip_problem(value)}"
            return (
                f"{label}: '{value}' cannot be opened as a raster. Choose a raster layer or a raster "
                "file GDAL can read (GeoTIFF, JP2, VRT ...)."
            )
        return ""

    # -- parameter helpers
    def add_advanced(self, parameter):
        parameter.setFlags(parameter.flags() | QgsProcessingParameterDefinition.Flag.FlagAdvanced)
        self.addParameter(parameter)

    def add_raster(self, name, label, optional=False):
        self.addParameter(QgsProcessingParameterRasterLayer(name, label, optional=optional))

    def add_in_memory(self):
        self.addParameter(
            with_help(
                QgsProcessingParameterBoolean(choices.IN_MEMORY, "Load the whole raster in memory", defaultValue=False),
                "Faster for fast models; uses about as much memory as the raster.",
            )
        )

    def add_threshold(self, name, label):
        self.addParameter(
            with_help(
                QgsProcessingParameterNumber(
                    name, label, QgsProcessingParameterNumber.Type.Double, optional=True, minValue=0.0, maxValue=1.0
                ),
                "Empty: the model's recommended value.",
            )
        )

    def add_resolution(self):
        self.add_advanced(
            with_help(
                QgsProcessingParameterNumber(
                    choices.RESOLUTION,
                    "Resolution, m (0: the raster's)",
                    QgsProcessingParameterNumber.Type.Double,
                    optional=True,
                    minValue=0.0,
                ),
                "Empty: the resolution the models were made for (30 m for the UKIS models, 10 m for "
                "FarmVibes.AI's and s2cloudless; with models of different resolutions, the finest). "
                "0: the raster's own resolution. A coarser resolution is faster; each pixel then gets "
                "the decision of the coarser pixel it lies in.",
            )
        )

    def add_bands(self):
        self.add_advanced(
            with_help(
                QgsProcessingParameterString(choices.BANDS, "Band mapping (empty: detect)", optional=True),
                "The Sentinel-2 band of each raster band, comma-separated, e.g. B02,B03,B04,B08.",
            )
        )

    def add_provider(self):
        self.add_advanced(
            QgsProcessingParameterEnum(
                choices.EXECUTION_PROVIDER, "Execution provider", options=list(PROVIDERS), defaultValue=0
            )
        )

    def add_merge_options(self):
        self.add_advanced(
            QgsProcessingParameterEnum(
                choices.PRODUCT_MASK_KIND,
                "Product mask kind",
                options=list(PRODUCT_KINDS),
                defaultValue=PRODUCT_KINDS.index(DEFAULTS.product_kind),
            )
        )
        self.add_advanced(
            QgsProcessingParameterNumber(
                choices.DILATION,
                "Dilation radius (pixels)",
                QgsProcessingParameterNumber.Type.Integer,
                defaultValue=DEFAULTS.dilation,
                minValue=0,
            )
        )
        self.add_advanced(
            with_help(
                QgsProcessingParameterNumber(
                    choices.MIN_AREA,
                    "Minimum area (pixels)",
                    QgsProcessingParameterNumber.Type.Integer,
                    defaultValue=DEFAULTS.min_area,
                    minValue=0,
                ),
                "FarmVibes.AI's min_area, applied after the dilation: patches of cloud and shadow "
                "together smaller than this become clear, then clear gaps smaller than this (holes, "
                "also at the raster's edge) are filled; a filled gap shows as shadow when it borders "
                "only shadow, else as cloud. 0: off.",
            )
        )
        self.add_advanced(
            QgsProcessingParameterEnum(
                choices.OUTPUT_MODE,
                "Output",
                options=["categorical (0 clear, 1 cloud, 2 shadow)", "binary (0 clear, 1 cloud or shadow)"],
                defaultValue=OUTPUT_MODES.index(DEFAULTS.output_mode),
            )
        )

    # -- reading
    def optional_number(self, parameters, name, context):
        value = parameters.get(name)
        if value is None or value == "":
            return None
        return self.parameterAsDouble(parameters, name, context)

    def raster_source(self, parameters, name, context, required=True):
        """The GDAL source of a raster parameter.

        A Sentinel-2 product (a .SAFE folder, its .zip, MTD file or a SENTINEL2 layer) is passed on
        as it is: core plans it."""
        value = parameters.get(name)
        if self._is_product_value(name, value):
            return value
        layer = self.parameterAsRasterLayer(parameters, name, context)
        if layer is None and self._is_gdal_source(name, value, context):
            return value
        if layer is None:
            if required:
                raise QgsProcessingException(
                    f"{name}: no raster given or it cannot be opened. Choose a raster layer or a raster file."
                )
            return ""
        return source_path(layer)

    def merge_settings(
        self, parameters, context, cloud_thr=FARMVIBES_CLOUD_THRESHOLD, shadow_thr=FARMVIBES_SHADOW_THRESHOLD
    ):
        return core.MergeSettings(
            cloud_threshold=cloud_thr,
            shadow_threshold=shadow_thr,
            product_kind=PRODUCT_KINDS[self.parameterAsEnum(parameters, choices.PRODUCT_MASK_KIND, context)],
            dilation=self.parameterAsInt(parameters, choices.DILATION, context),
            min_area=self.parameterAsInt(parameters, choices.MIN_AREA, context),
            output_mode=OUTPUT_MODES[self.parameterAsEnum(parameters, choices.OUTPUT_MODE, context)],
        )

    def provider_choice(self, parameters, context):
        return PROVIDERS[self.parameterAsEnum(parameters, choices.EXECUTION_PROVIDER, context)]

    def optional_output(self, parameters, name, context):
        """Path of an optional raster output, or None when the user skipped it."""
        value = parameters.get(name)
        if value is None or value == "" or (hasattr(value, "sink") and not value.sink.staticValue()):
            return None
        return self.parameterAsOutputLayer(parameters, name, context) or None
