"""Render the plugin's dialogs offscreen into docs/ (run with QGIS's Python after `make setup`).

    QT_QPA_PLATFORM=offscreen .venv/bin/python docs/make_screenshots.py
"""

import os
import sys
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "test"))

from qgis.core import QgsApplication, QgsProject, QgsRasterLayer

app = QgsApplication([], True)
app.initQgis()
import conftest  # noqa: F401  (makes cloud_mask_improver importable, onnxruntime on the path)
from samples import L1C_STACK, PRODUCT_MASK

from cloud_mask_improver.ui.improve_dialog import ImproveDialog
from cloud_mask_improver.ui.model_manager import ModelManagerDialog


def shoot(widget, name: str) -> None:
    widget.show()
    for _ in range(5):
        app.processEvents()
    widget.grab().save(str(ROOT / "docs" / name))
    print("wrote", ROOT / "docs" / name)


def main() -> None:
    project = QgsProject.instance()
    project.addMapLayer(QgsRasterLayer(str(L1C_STACK), "S2B_MSIL1C sample"))
    project.addMapLayer(QgsRasterLayer(str(PRODUCT_MASK), "product cloud mask"))
    dialog = ImproveDialog()
    dialog.form.cloud_models.setValue("ukis-4b-l1c")
    dialog.form.resolution.setValue(30)
    dialog.form.want_cloud_p.setChecked(True)
    dialog.progress.setValue(0)
    shoot(dialog, "dialog.png")
    manager = ModelManagerDialog()
    manager.select("ukis-4b-l1c")
    shoot(manager, "model_manager.png")


if __name__ == "__main__":
    main()
