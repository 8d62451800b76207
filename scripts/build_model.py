"""Write FarmVibes.AI's workflow as a graphical-modeler model built only from the atomic algorithms.

The algorithms are cloud probability, shadow probability and merge, wired like FarmVibes.AI's
graph. Run once when the graph changes; the .model3 is committed.

Usage: .venv/bin/python scripts/build_model.py
"""

import os
import sys
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "algorithms" / "models" / "improve_cloud_mask.model3"
# The plugin under its installed name, from the plugins folder setup links to this checkout:
# the children's parameters (and their defaults) come from the real algorithms.
sys.path.insert(0, str(ROOT / ".venv" / "qgis-plugins"))

from qgis.core import (
    QgsApplication,
    QgsProcessingModelAlgorithm,
    QgsProcessingModelChildAlgorithm,
    QgsProcessingModelChildParameterSource,
    QgsProcessingModelOutput,
    QgsProcessingModelParameter,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterString,
)
from qgis.PyQt.QtCore import QPointF


def param(model, definition, x, y):
    model.addModelParameter(definition, QgsProcessingModelParameter(definition.name()))
    model.parameterComponent(definition.name()).setPosition(QPointF(x, y))


def model_picker(definition, shadow=False):
    """The installed-model picker the algorithms' own model parameters have."""
    from cloud_mask_improver.algorithms.widgets import wrapper_metadata

    definition.setMetadata({**definition.metadata(), **wrapper_metadata("CLOUD_MODEL", shadow)})
    return definition


def child(algorithm_id, child_id, description, sources, x, y):
    """A step with ``sources`` wired and every other input at the algorithm's own default.

    A mandatory input left unset makes the modeler refuse the model (drawn red)."""
    step = QgsProcessingModelChildAlgorithm(algorithm_id)
    step.setChildId(child_id)
    step.setDescription(description)
    step.setPosition(QPointF(x, y))
    algorithm = QgsApplication.processingRegistry().algorithmById(algorithm_id)
    for definition in algorithm.parameterDefinitions():
        name = definition.name()
        if name in sources:
            step.addParameterSources(name, [sources[name]])
        elif not definition.isDestination() and definition.defaultValue() is not None:
            step.addParameterSources(
                name, [QgsProcessingModelChildParameterSource.fromStaticValue(definition.defaultValue())]
            )
    return step


def build() -> QgsProcessingModelAlgorithm:
    model = QgsProcessingModelAlgorithm("Improve cloud mask (model)", "", "")
    model.setHelpContent(
        {
            "ALG_DESC": (
                "FarmVibes.AI's workflow improve_cloud_mask as an editable model: cloud probability and shadow "
                "probability from the Sentinel-2 raster, merged with the product mask. Each step reads the "
                "raster itself (as FarmVibes.AI does); 'Improve cloud mask' does the same in one pass."
            )
        }
    )
    number = QgsProcessingParameterNumber.Type.Double
    param(model, QgsProcessingParameterRasterLayer("S2_RASTER", "Sentinel-2 raster"), 120, 60)
    param(model, QgsProcessingParameterRasterLayer("PRODUCT_MASK", "Product cloud mask", optional=True), 520, 60)
    # Empty thresholds: the models' recommended values, as in 'Improve cloud mask' (the
    # probability rasters record them for the merge step).
    param(
        model,
        QgsProcessingParameterNumber("CLOUD_THR", "Cloud threshold (empty: the model's)", number, None, True, 0, 1),
        720,
        60,
    )
    param(
        model,
        QgsProcessingParameterNumber("SHADOW_THR", "Shadow threshold (empty: the model's)", number, None, True, 0, 1),
        900,
        60,
    )
    param(model, model_picker(QgsProcessingParameterString("CLOUD_MODEL", "Cloud model", optional=True)), 300, 60)
    param(
        model,
        model_picker(QgsProcessingParameterString("SHADOW_MODEL", "Shadow model", optional=True), shadow=True),
        340,
        120,
    )
    src = QgsProcessingModelChildParameterSource
    cloud = child(
        "cloudmask:cloudprobability",
        "cloud",
        "Cloud",
        {
            "SENTINEL_RASTER": src.fromModelParameter("S2_RASTER"),
            "MODEL_PATH": src.fromModelParameter("CLOUD_MODEL"),
            "IN_MEMORY": src.fromStaticValue(False),
        },
        200,
        240,
    )
    shadow = child(
        "cloudmask:shadowprobability",
        "shadow",
        "Shadow",
        {
            "SENTINEL_RASTER": src.fromModelParameter("S2_RASTER"),
            "MODEL_PATH": src.fromModelParameter("SHADOW_MODEL"),
            "IN_MEMORY": src.fromStaticValue(False),
        },
        500,
        240,
    )
    merge = child(
        "cloudmask:mergecloudmasks",
        "merge",
        "Merge",
        {
            "CLOUD_PROBABILITY": src.fromChildOutput("cloud", "CLOUD_PROBABILITY"),
            "SHADOW_PROBABILITY": src.fromChildOutput("shadow", "SHADOW_PROBABILITY"),
            "PRODUCT_MASK": src.fromModelParameter("PRODUCT_MASK"),
            "CLOUD_PROB_THRESHOLD": src.fromModelParameter("CLOUD_THR"),
            "SHADOW_PROB_THRESHOLD": src.fromModelParameter("SHADOW_THR"),
        },
        350,
        420,
    )
    output = QgsProcessingModelOutput("MASK", "Improved cloud mask")
    output.setChildOutputName("MERGED_CLOUD_MASK")
    output.setChildId("merge")
    merge.setModelOutputs({"MASK": output})
    for step in (cloud, shadow, merge):
        model.addChildAlgorithm(step)
    return model


def save(build_model, name: str, out: Path) -> int:
    """Build a model inside a QGIS application and write it as .model3."""
    app = QgsApplication([], False)
    app.initQgis()
    from cloud_mask_improver.algorithms.provider import CloudMaskProvider

    provider = CloudMaskProvider()  # kept referenced while registered
    QgsApplication.processingRegistry().addProvider(provider)
    model = build_model()
    ok, issues = model.validate()
    if not ok:
        print("invalid model:", *issues, sep="\n  ")
        return 1
    model.setName(name)
    model.setGroup("")
    if not model.toFile(str(out)):
        print("could not write", out)
        return 1
    print(out)
    return 0


def main() -> int:
    return save(build, "Improve cloud mask (model)", OUT)


if __name__ == "__main__":
    sys.exit(main())
