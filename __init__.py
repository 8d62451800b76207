"""Cloud Mask Improver: QGIS loads the plugin through ``classFactory``."""

from .core import deps, home


def data_home():
    """The plugin's data home for the running QGIS profile (or ``$CLOUDMASK_HOME``)."""
    from qgis.core import QgsApplication  # here, not at import: core stays usable without QGIS
    return home.data_home(QgsApplication.qgisSettingsDirPath())


def classFactory(iface):
    """Make the plugin. ``iface`` is None (or a stub) under ``qgis_process``."""
    # onnxruntime lives in a private folder of the data home: put it on the
    # path before anything of ours can import it.
    deps.ensure_on_path(data_home())
    from .plugin import CloudMaskImproverPlugin

    return CloudMaskImproverPlugin(iface)
