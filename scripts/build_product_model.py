"""Write the product chain as a graphical-modeler model.

Prepare Sentinel-2 product (stack + SCL from a downloaded .zip / .SAFE) -> Improve cloud mask.
Run once when the graph changes; the .model3 is committed.

Usage: .venv/bin/python scripts/build_product_model.py
"""

import os
import sys
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "algorithms" / "models" / "improve_from_product.model3"
NAME = "Improve cloud mask from product (model)"

from build_model import child, model_picker, param, save  # the script beside this one
from qgis.core import (
    QgsProcessingModelAlgorithm,
    QgsProcessingModelChildParameterSource,
    QgsProcessingModelOutput,
    QgsProcessingParameterExtent,
    QgsProcessingParameterFile,
    QgsProcessingParameterNumber,
    QgsProcessingParameterString,
)

SCL_KIND = 1  # index of "scl" in PRODUCT_MASK_KIND (core.merge.PRODUCT_KINDS)


def build() -> QgsProcessingModelAlgorithm:
    model = QgsProcessingModelAlgorithm(NAME, "", "")
    model.setHelpContent(
        {
            "ALG_DESC": (
                "From a downloaded Sentinel-2 product (.zip, .SAFE folder or its MTD file) to the improved "
                "cloud mask: the product becomes a band stack (offsets of baseline 04.00+ recorded) and its "
                "SCL, which 'Improve cloud mask' merges with the models' clouds and shadows."
            )
        }
    )
    number = QgsProcessingParameterNumber.Type.Double
    param(
        model,
        QgsProcessingParameterFile(
            "INPUT",
            "Sentinel-2 product (.zip, MTD_MSIL2A.xml / MTD_MSIL1C.xml, or .SAFE folder)",
            behavior=QgsProcessingParameterFile.Behavior.File,
            fileFilter="Sentinel-2 product (*.zip *.ZIP MTD_MSIL2A.xml MTD_MSIL1C.xml);;All files (*)",
        ),
        120,
        60,
    )
    param(
        model,
        QgsProcessingParameterNumber("RESOLUTION", "Resolution in metres (10, 20 or 60)", number, 10.0, False, 10.0),
        320,
        60,
    )
    param(model, QgsProcessingParameterExtent("EXTENT", "Extent to cut (empty: whole tile)", optional=True), 520, 60)
    param(
        model,
        model_picker(QgsProcessingParameterString("CLOUD_MODEL", "Cloud model (empty: best installed)", optional=True)),
        720,
        60,
    )
    param(
        model,
        model_picker(
            QgsProcessingParameterString("SHADOW_MODEL", "Shadow model (empty: default)", optional=True), shadow=True
        ),
        720,
        120,
    )
    param(
        model,
        QgsProcessingParameterNumber("CLOUD_THR", "Cloud threshold (empty: the model's)", number, None, True, 0, 1),
        920,
        60,
    )
    param(
        model,
        QgsProcessingParameterNumber("SHADOW_THR", "Shadow threshold (empty: the model's)", number, None, True, 0, 1),
        920,
        120,
    )
    src = QgsProcessingModelChildParameterSource
    prepare = child(
        "cloudmask:prepares2product",
        "prepare",
        "Prepare Sentinel-2 product",
        {
            "INPUT": src.fromModelParameter("INPUT"),
            "RESOLUTION": src.fromModelParameter("RESOLUTION"),
            "EXTENT": src.fromModelParameter("EXTENT"),
        },
        250,
        240,
    )
    improve = child(
        "cloudmask:improvecloudmask",
        "improve",
        "Improve cloud mask",
        {
            "S2_RASTER": src.fromChildOutput("prepare", "S2_RASTER"),
            "PRODUCT_MASK": src.fromChildOutput("prepare", "PRODUCT_MASK"),
            "PRODUCT_MASK_KIND": src.fromStaticValue(SCL_KIND),
            "CLOUD_MODEL": src.fromModelParameter("CLOUD_MODEL"),
            "SHADOW_MODEL": src.fromModelParameter("SHADOW_MODEL"),
            "CLOUD_THR": src.fromModelParameter("CLOUD_THR"),
            "SHADOW_THR": src.fromModelParameter("SHADOW_THR"),
            "IN_MEMORY": src.fromStaticValue(False),
        },
        500,
        420,
    )
    output = QgsProcessingModelOutput("MASK", "Improved cloud mask")
    output.setChildOutputName("MASK")
    output.setChildId("improve")
    improve.setModelOutputs({"MASK": output})
    for step in (prepare, improve):
        model.addChildAlgorithm(step)
    return model


def main() -> int:
    return save(build, NAME, OUT)


if __name__ == "__main__":
    sys.exit(main())
