"""The product chain as a graphical-modeler model (built by scripts/build_product_model.py).

Prepare Sentinel-2 product, then Improve cloud mask with the product's SCL."""

from .workflow_model import ShippedModel


class ProductChainModel(ShippedModel):
    file = "improve_from_product.model3"
    model_id = "improvefromproductmodel"
    title = "Improve cloud mask from product (model)"
