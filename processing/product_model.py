"""The product chain as a graphical-modeler model (built by scripts/build_product_model.py):
Prepare Sentinel-2 product, then Improve cloud mask with the product's SCL.

Exposed by the provider so users can run it on a downloaded product, or open
it in the modeler to edit and save their own copy.
"""

import os

from qgis.core import QgsProcessingModelAlgorithm

MODEL_FILE = os.path.join(os.path.dirname(__file__), "models", "improve_from_product.model3")


class ProductChainModel(QgsProcessingModelAlgorithm):
    def __init__(self):
        super().__init__()
        self.fromFile(MODEL_FILE)

    def name(self):
        return "improvefromproductmodel"

    def displayName(self):
        return "Improve cloud mask from product (model)"

    def createInstance(self):
        return ProductChainModel()
