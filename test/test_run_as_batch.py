"""QGIS's own "Run as Batch Process…" of Improve cloud mask: the real batch dialog
(processing.gui.BatchAlgorithmDialog, offscreen), one row per product, run as the desktop runs it."""

import numpy as np
import pytest
from osgeo import gdal
from processing.tools import dataobjects
from qgis.core import QgsApplication
from s2_product import build_product

PARAMS = {"CLOUD_MODEL": "ukis-6b-l2a", "SHADOW_MODEL": "ukis-6b-l2a"}


@pytest.fixture(scope="module")
def two_products(tmp_path_factory):
    folder = tmp_path_factory.mktemp("batch_dialog")
    new = build_product(folder, "L2A", "04.00")
    old = build_product(folder / "old", "L2A", "02.14", zipped=False)
    return [str(new.zip), str(old.metadata)]


def test_run_as_batch_process_writes_one_mask_per_row(two_products, tmp_path, provider, qgis_iface):
    from processing.gui.BatchAlgorithmDialog import BatchAlgorithmDialog
    algorithm = QgsApplication.processingRegistry().createAlgorithmById("cloudmask:improvecloudmask")
    dialog = BatchAlgorithmDialog(algorithm)
    panel = dialog.mainWidget()
    context = dataobjects.createContext()
    panel.clear()
    masks = []
    for row, product in enumerate(two_products):
        panel.addRow()
        for name, value in {"S2_RASTER": product, **PARAMS}.items():
            panel.wrappers[row][panel.parameter_to_column[name]].setParameterValue(value, context)
        masks.append(tmp_path / f"mask{row}.tif")
        panel.tblParameters.cellWidget(row + 1, panel.parameter_to_column["MASK"]).setValue(str(masks[-1]))
    assert panel.batchRowCount() == 2
    dialog.runAlgorithm()
    arrays = [gdal.Open(str(m)).ReadAsArray() for m in masks]
    assert arrays[0].shape == (240, 240) and np.array_equal(arrays[0], arrays[1])  # the same scene, two baselines
    dialog.close()
