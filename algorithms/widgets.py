"""Which picker each model and band parameter gets in the Processing dialogs.

The pickers themselves (``ui/processing_wrappers.py``) need QGIS's Processing
GUI; this module does not, so the algorithms can name them by class path in
parameter metadata and still run in ``qgis_process`` or any headless runner.
The values stay plain strings whichever widget produced them.
"""

from __future__ import annotations

from ..core import choices

WRAPPERS = f"{__package__.rsplit('.', 1)[0]}.ui.processing_wrappers"
BY_PARAMETER = {
    choices.CLOUD_MODEL: "ModelWrapper",
    choices.SHADOW_MODEL: "ModelWrapper",
    "MODEL_PATH": "ModelWrapper",
    choices.CLOUD_MODELS: "ModelListWrapper",
    "MODEL_PATHS": "ModelListWrapper",
    choices.BANDS: "BandsWrapper",
}


def wrapper_metadata(name: str, shadow: bool = False) -> dict:
    """The metadata that gives parameter ``name`` its picker (``shadow``: list models that give shadow)."""
    spec = {"class": f"{WRAPPERS}.{BY_PARAMETER[name]}"}
    if BY_PARAMETER[name] == "ModelWrapper":
        spec["shadow"] = shadow
    return {"widget_wrapper": spec}


def use_widgets(algorithm) -> None:
    """Attach the pickers to whichever of the model and band parameters the algorithm has."""
    gives_shadow = getattr(algorithm, "output", "") == choices.SHADOW_PROBABILITY
    for name in BY_PARAMETER:
        parameter = algorithm.parameterDefinition(name)
        if parameter is not None:
            shadow = name == choices.SHADOW_MODEL or (name == "MODEL_PATH" and gives_shadow)
            parameter.setMetadata({**parameter.metadata(), **wrapper_metadata(name, shadow)})
