"""The choices the Processing parameters offer by index, without numpy.

QGIS lists the algorithms, and so builds their parameters, at every start, whether
or not anyone runs them: what a parameter needs must not import the engine.
``merge`` and ``inference`` take their lists from here.
"""

PROVIDERS = ("auto", "cpu", "cuda")  # index order is public API
PRODUCT_KINDS = ("nonzero", "scl", "qa60", "probability")  # index order is public API
OUTPUT_MODES = ("categorical", "binary")  # index order is public API
