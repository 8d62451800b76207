"""The ``cloudmask`` Processing provider: it only lists the algorithms."""

import os

from qgis.core import QgsProcessingProvider
from qgis.PyQt.QtGui import QIcon

ICON = os.path.join(os.path.dirname(os.path.dirname(__file__)), "icons", "icon.svg")


class CloudMaskProvider(QgsProcessingProvider):
    def id(self):
        return "cloudmask"

    def name(self):
        return "Cloud Mask Improver"

    def icon(self):
        return QIcon(ICON)

    def svgIconPath(self):
        return ICON

    def supportedOutputRasterLayerExtensions(self):
        """GeoTIFF, the format the algorithms write (and VRT, which 'Prepare Sentinel-2 product' can also write).

        The file pickers offer these only, and temporary outputs are .tif even when the user's
        default raster format is another."""
        return ["tif", "vrt"]

    def loadAlgorithms(self):
        for algorithm in _algorithms():
            self.addAlgorithm(algorithm)


def _algorithms():
    from .apply_mask import ApplyMask
    from .cloud_probability import CloudProbability
    from .ensemble_cloud_probability import EnsembleCloudProbability
    from .improve_cloud_mask import ImproveCloudMask
    from .improve_cloud_mask_batch import ImproveCloudMaskBatch
    from .improve_cloud_mask_ensemble import ImproveCloudMaskEnsemble
    from .merge_cloud_masks import MergeCloudMasks
    from .prepare_s2_product import PrepareS2Product
    from .product_model import ProductChainModel
    from .shadow_probability import ShadowProbability
    from .workflow_model import WorkflowModel

    return [
        ImproveCloudMask(),
        ImproveCloudMaskEnsemble(),
        CloudProbability(),
        EnsembleCloudProbability(),
        ShadowProbability(),
        MergeCloudMasks(),
        WorkflowModel(),
        PrepareS2Product(),
        ProductChainModel(),
        ImproveCloudMaskBatch(),
        ApplyMask(),
    ]
