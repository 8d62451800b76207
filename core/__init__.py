"""Cloud Mask Improver engine.

Plain Python + numpy + onnxruntime + GDAL. Nothing in this package imports
``qgis``: the Processing algorithms, scripts and tests all call it directly,
and a batch runner could too.
"""
