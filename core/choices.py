"""The choices and defaults the Processing parameters offer, without numpy.

QGIS lists the algorithms, and so builds their parameters, at every start, whether
or not anyone runs them: what a parameter needs must not import the engine.
``merge`` and ``inference`` take their lists from here.
"""

PROVIDERS = ("auto", "cpu", "cuda")  # index order is public API
PRODUCT_KINDS = ("nonzero", "scl", "qa60", "probability")  # index order is public API
OUTPUT_MODES = ("categorical", "binary")  # index order is public API

# Persistent cloud in the season layers (core/season/layers.py says how they were chosen).
PERSISTENT_SHARE = 0.9
PERSISTENT_MIN_DATES = 5

# The classes Apply cloud mask can set to nodata, in the order its CLASSES parameter lists them.
MASKED_CLASSES = ("cloud", "shadow", "nodata")  # index order is public API
