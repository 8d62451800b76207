"""Loaded results get their style on every run, not only the first (layer post-processors)."""

import numpy as np
import pytest
from qgis.core import QgsPalettedRasterRenderer, QgsProject, QgsSingleBandPseudoColorRenderer
from rasters import write_raster


def loaded(result, name):
    return [layer for layer in QgsProject.instance().mapLayers().values() if layer.source() == result[name]]


def test_every_run_styles_its_loaded_layer(provider, project, tmp_path):
    """QGIS deletes a post-processor once it has used it, so each run needs its own.

    A shared one fails from the second run on ("wrapped C/C++ object of type MaskStyler has
    been deleted")."""
    import processing

    from cloud_mask_improver.algorithms import styling

    probabilities = np.zeros((40, 40), dtype=np.float32)
    probabilities[10:20, 10:20] = 0.9
    cloud = write_raster(tmp_path / "c.tif", probabilities, nodata=-1.0)
    for run in range(3):
        result = processing.runAndLoadResults(
            "cloudmask:mergecloudmasks",
            {"CLOUD_PROBABILITY": cloud, "DILATION": 1, "MERGED_CLOUD_MASK": str(tmp_path / f"m{run}.tif")},
        )
        (mask,) = loaded(result, "MERGED_CLOUD_MASK")
        assert isinstance(mask.renderer(), QgsPalettedRasterRenderer), f"run {run + 1}"
        assert [c.label for c in mask.renderer().classes()] == ["clear", "cloud", "cloud shadow"]
    assert styling.pending_stylers() == 0  # QGIS used and deleted each one: none is leaked


def test_a_failed_run_loads_nothing(provider, project, tmp_path):
    import processing
    from qgis.core import QgsProcessingException

    with pytest.raises(QgsProcessingException):
        processing.runAndLoadResults(
            "cloudmask:mergecloudmasks",
            {"CLOUD_PROBABILITY": str(tmp_path / "missing.tif"), "MERGED_CLOUD_MASK": str(tmp_path / "m.tif")},
        )
    assert not QgsProject.instance().mapLayers()


def test_probability_outputs_are_styled_on_every_run(provider, project, tmp_path):
    from qgis.core import QgsProcessingContext, QgsProcessingUtils

    from cloud_mask_improver.algorithms.styling import ProbabilityStyler, style_on_load

    cloud = write_raster(tmp_path / "p.tif", np.full((20, 20), 0.5, dtype=np.float32), nodata=-1.0)
    for _ in range(2):
        context = QgsProcessingContext()
        context.setProject(project)
        context.addLayerToLoadOnCompletion(cloud, QgsProcessingContext.LayerDetails("p", project, "p"))
        style_on_load(context, cloud, ProbabilityStyler())
        layer = QgsProcessingUtils.mapLayerFromString(cloud, context)
        context.layerToLoadOnCompletionDetails(cloud).postProcessor().postProcessLayer(layer, context, None)
        assert isinstance(layer.renderer(), QgsSingleBandPseudoColorRenderer)
