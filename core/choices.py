"""The choices, defaults, parameter names and optional outputs of the runs, without numpy.

QGIS lists the algorithms, and so builds their parameters, at every start, whether
or not anyone runs them: what a parameter needs must not import the engine.
``merge`` and ``inference`` take their lists from here, and so do the algorithms,
the dialog and the command line: each default, parameter name and optional output
is written here once.
"""

from __future__ import annotations

from dataclasses import dataclass

PROVIDERS = ("auto", "cpu", "cuda")  # index order is public API
PRODUCT_KINDS = ("nonzero", "scl", "qa60", "probability")  # index order is public API
OUTPUT_MODES = ("categorical", "binary")  # index order is public API

# Persistent cloud in the season layers (core/season/layers.py says how they were chosen).
PERSISTENT_SHARE = 0.9
PERSISTENT_MIN_DATES = 5

# The classes Apply cloud mask can set to nodata, in the order its CLASSES parameter lists them.
MASKED_CLASSES = ("cloud", "shadow", "nodata")  # index order is public API


@dataclass(frozen=True)
class MergeDefaults:
    """The merge's defaults, FarmVibes.AI's.

    The algorithms, the dialog, the command line and ``merge.MergeSettings`` offer these;
    the thresholds' defaults are in ``decision.py``."""

    product_kind: str = "nonzero"
    dilation: int = 5  # disk radius in px
    min_area: int = 0  # px; 0: off
    output_mode: str = "categorical"


DEFAULTS = MergeDefaults()

# -- parameter names of the improve algorithms, which the dialog fills in (public API: saved
# models and scripts use them; never change one).
S2_RASTER = "S2_RASTER"
PRODUCT_MASK = "PRODUCT_MASK"
CLOUD_THR = "CLOUD_THR"
SHADOW_THR = "SHADOW_THR"
IN_MEMORY = "IN_MEMORY"
CLOUD_MODEL = "CLOUD_MODEL"  # one model: Improve cloud mask
CLOUD_MODELS = "CLOUD_MODELS"  # comma-separated: Improve cloud mask (ensemble)
SHADOW_MODEL = "SHADOW_MODEL"
BANDS = "BANDS"
PRODUCT_MASK_KIND = "PRODUCT_MASK_KIND"
DILATION = "DILATION"
MIN_AREA = "MIN_AREA"
OUTPUT_MODE = "OUTPUT_MODE"
RESOLUTION = "RESOLUTION"
EXECUTION_PROVIDER = "EXECUTION_PROVIDER"
EXTENT = "EXTENT"
AREA = "AREA"
NODATA_OUTSIDE_AREA = "NODATA_OUTSIDE_AREA"
MASK = "MASK"  # the improved mask (an output)
# The optional outputs (below); the probabilities are also the merge's inputs.
CLOUD_PROBABILITY = "CLOUD_PROBABILITY"
SHADOW_PROBABILITY = "SHADOW_PROBABILITY"
SOURCE = "SOURCE"
CLOUD_UNCERTAINTY = "CLOUD_UNCERTAINTY"


@dataclass(frozen=True)
class OptionalOutput:
    """A raster an improve run writes only when asked.

    Declared here once: the algorithms' parameters, the dialog's check boxes and the layers
    the dialog loads all come from it."""

    name: str  # the Processing parameter and result (public API)
    label: str  # the parameter's description and the dialog's check box; its layer's name in lower case
    setting: str  # where the dialog remembers its check box (kept: users' settings use it)
    field: str  # the request's field: of ``plan.ProbabilityOutputs``, or ``source`` of ``ImproveRequest``
    ensemble: bool = False  # only the ensemble algorithm offers it
    tooltip: str = ""

    @property
    def probability(self) -> bool:
        """A probability raster (styled as one); else the SOURCE raster."""
        return self.field != "source"


# In the algorithms' parameter order (the toolbox lists them so).
OPTIONAL_OUTPUTS = (
    OptionalOutput(CLOUD_PROBABILITY, "Cloud probability", "cloud_p", "cloud"),
    OptionalOutput(SHADOW_PROBABILITY, "Shadow probability", "shadow_p", "shadow"),
    OptionalOutput(
        SOURCE,
        "Which source flagged each pixel",
        "source",
        "source",
        tooltip="A layer that shows, for each masked pixel, whether the product mask, "
        "the models or the dilation flagged it.",
    ),
    OptionalOutput(CLOUD_UNCERTAINTY, "Cloud uncertainty", "uncertainty", "uncertainty", ensemble=True),
)


def optional_outputs(ensemble: bool) -> tuple[OptionalOutput, ...]:
    """The optional outputs of Improve cloud mask, or of its ensemble."""
    return tuple(o for o in OPTIONAL_OUTPUTS if ensemble or not o.ensemble)
