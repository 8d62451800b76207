"""The plugin's own dialogs and widgets (qgis.PyQt only).

They collect parameters and run the ``cloudmask`` Processing algorithms, never the engine directly."""
