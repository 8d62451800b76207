"""Cloud Mask Improver engine, and its public API: what ``algorithms/``, ``ui/`` and the command line use.

Plain Python + numpy + onnxruntime + GDAL. Nothing in this package imports
``qgis``: the Processing algorithms, scripts and tests all call it directly,
and a batch runner could too.

The front-ends take every name they need from here (``from ..core import X``, or
``from .. import core`` then ``core.X``), not from the module that defines it, so the
modules behind can move without them noticing. QGIS imports the algorithms at every
start, and that must not import the engine (numpy, GDAL's arrays, onnxruntime): so a
name's module is imported on the name's first use (PEP 562), never when this package is.

A name is looked up in its module at every use, not kept here: a test that patches the
defining module (``monkeypatch.setattr(deps, "runtime_status", ...)``) is seen by whoever
reads ``core.runtime_status`` after the patch. A public name never equals a submodule's
name (``merge``, ``apply_mask``): importing the submodule would set that attribute here.
"""

from __future__ import annotations

import sys
from types import ModuleType
from typing import Any

# Public name -> "module" (relative to this package) or "module:name" where the public
# name differs from the module's own (two modules use it, or it names a submodule).
_API = {
    # The parameters: their choices, defaults and names (``choices`` is the namespace of
    # the parameter and output names), without numpy.
    "choices": "",
    "DEFAULTS": "choices",
    "MASK": "choices",
    "MASKED_CLASSES": "choices",
    "OPTIONAL_OUTPUTS": "choices",
    "OUTPUT_MODE": "choices",
    "OUTPUT_MODES": "choices",
    "OptionalOutput": "choices",
    "PERSISTENT_MIN_DATES": "choices",
    "PERSISTENT_SHARE": "choices",
    "PRODUCT_KINDS": "choices",
    "PROVIDERS": "choices",
    "optional_outputs": "choices",
    # The rules that decide a pixel, without numpy.
    "FARMVIBES_CLOUD_THRESHOLD": "decision",
    "FARMVIBES_SHADOW_THRESHOLD": "decision",
    "decide": "decision",
    "recommended": "decision",
    # Errors a user can fix, and progress.
    "BandError": "errors",
    "CardError": "errors",
    "CloudMaskError": "errors",
    "FetchError": "errors",
    "FileInUseError": "errors",
    "ModelNotFound": "errors",
    "RasterError": "errors",
    "SettingsError": "errors",
    "SummaryInUseError": "errors",
    "Cancelled": "progress",
    "Feedback": "progress",
    # Requests, and the runs that take them.
    "ImproveRequest": "plan",
    "MergeRequest": "plan",
    "ProbabilityOutputs": "plan",
    "ProbabilityRequest": "plan",
    "choose_models": "plan",
    "improve": "pipeline",
    "probabilities": "pipeline",
    "merge_masks": "pipeline:merge",
    "recorded": "probability",
    "processing_level": "inputs",
    "MergeSettings": "merge",
    "apply_cloud_mask": "apply_mask:apply_mask",
    "describe_applied_mask": "apply_mask:describe",
    "applied_mask_warnings": "apply_mask:warnings",
    "Area": "area",
    "Selection": "area",
    "read_area": "area",
    # What a run's outputs mean: the mask's classes and the source layer's.
    "BINARY_CATEGORY_COLOURS": "merge",
    "BINARY_CATEGORY_NAMES": "merge",
    "CATEGORY_COLOURS": "merge",
    "CATEGORY_NAMES": "merge",
    "CLEAR": "merge",
    "NODATA": "merge",
    "SOURCE_CLEAR": "provenance:CLEAR",
    "SOURCE_COLOURS": "provenance:COLOURS",
    "SOURCE_NAMES": "provenance:NAMES",
    "SOURCE_NODATA": "provenance:NODATA",
    "FIGURES": "provenance",
    "figures_summary": "provenance:summary",
    # Inputs: rasters, bands, Sentinel-2 products, output files.
    "ALL_BANDS": "bands",
    "detect_bands": "bands",
    "normalise_band": "bands:normalise",
    "parse_band_list": "bands",
    "opens_as_raster": "raster",
    "raster_info": "raster",
    "require_geotiff_name": "raster",
    "is_product": "sentinel2.product",
    "prepare_product": "sentinel2.product:prepare",
    "product_crs": "sentinel2.product",
    "read_product": "sentinel2.product",
    "stack_metadata": "sentinel2.product",
    "zip_problem": "sentinel2.product",
    "INSTALL_AGAIN": "staging",
    "check_destination": "staging",
    "partial_path": "staging",
    "remove_file": "staging:remove",
    "replacing": "staging",
    "swap": "staging",
    # A season of products (the batch algorithm and the command line).
    "BatchOptions": "season.batch",
    "BatchRow": "season.batch:Row",
    "batch_template": "season.batch:template",
    "clean_partials": "season.batch",
    "plan_items": "season.batch",
    "prepare_output_folder": "season.batch",
    "run_on_cluster": "season.batch",
    "run_sequential": "season.batch",
    "DEFAULT_MIN_DATES": "season.layers",
    "DEFAULT_SHARE": "season.layers",
    "SeasonSettings": "season.layers",
    "season_outputs": "season.report",
    "write_summary": "season.summary:write_all",
    "local_cluster": "season.dask_cluster",
    "size_cluster": "season.dask_cluster",
    # Models: their cards, the catalogue, downloads and installs.
    "MODEL_LEVELS": "modelstore.cards:LEVELS",
    "ModelCard": "modelstore.cards",
    "all_cards": "modelstore.cards",
    "card_to_json": "modelstore.cards",
    "parse_card": "modelstore.cards",
    "installed_models": "modelstore.catalogue:installed",
    "downloadable_models": "modelstore.installer:downloadable",
    "install_model": "modelstore.installer:install",
    "is_installed": "modelstore.installer",
    "remove_model": "modelstore.installer:remove",
    "PinnedRelease": "modelstore.fetch",
    "index_url": "modelstore.fetch",
    "sha256_of": "modelstore.fetch",
    "verify_download": "modelstore.fetch:verify",
    # The ONNX runtime: where the data lives, installing it, the GPU, child processes.
    "cache_dir": "runtime.home",
    "models_dir": "runtime.home",
    "python_dir": "runtime.home",
    "ONNXRUNTIME_VERSION": "runtime.deps",
    "RuntimeStatus": "runtime.deps",
    "ensure_on_path": "runtime.deps",
    "gpu_install_problems": "runtime.deps",
    "install_command": "runtime.deps",
    "install_cpu_runtime": "runtime.deps",
    "install_gpu_runtime": "runtime.deps",
    "installed_runtime": "runtime.deps",
    "installed_version": "runtime.deps",
    "no_wheel_reason": "runtime.deps",
    "pip_environment": "runtime.deps",
    "python_executable": "runtime.deps",
    "runtime_status": "runtime.deps",
    "shown_command": "runtime.deps",
    "this_platform": "runtime.deps",
    "driver_description": "runtime.gpu",
    "driver_known": "runtime.gpu",
    "process_environment": "runtime.processes:environment",
    "start_process": "runtime.processes:start",
}

__all__ = sorted(_API)


def __getattr__(name: str) -> Any:
    """Import the module that defines ``name`` and read it there (see the module's docstring)."""
    if name not in _API:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module, _, attribute = _API[name].partition(":")
    if not module:
        return _submodule(name)
    return getattr(_submodule(module), attribute or name)


def _submodule(dotted: str) -> ModuleType:
    """This package's submodule ``dotted``: the one it already holds, else imported now.

    Not simply ``sys.modules``: after QGIS reloads the plugin (Plugin Reloader, or
    disable/enable), a run started before goes on with the modules it began with, and must
    keep raising and catching the same ``Cancelled`` and errors; ``sys.modules`` then
    holds the new ones."""
    found: Any = globals().get(dotted.split(".")[0])
    for part in dotted.split(".")[1:]:
        found = getattr(found, part, None)
    if isinstance(found, ModuleType):
        return found
    # The import statement's way (builtins.__import__), not importlib.import_module: QGIS
    # learns which modules a plugin loaded through that hook, and unloads exactly those when
    # it reloads the plugin; a module it never saw would outlive the reload.
    __import__(f"{__name__}.{dotted}")
    return sys.modules[f"{__name__}.{dotted}"]


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
