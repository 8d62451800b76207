"""Cloud Mask Improver: QGIS loads the plugin through ``classFactory``."""

from qgis.core import QgsApplication

from .core import deps, home


def data_home():
    """The plugin's data home for the running QGIS profile (or ``$CLOUDMASK_HOME``)."""
    return home.data_home(QgsApplication.qgisSettingsDirPath())


def classFactory(iface):
    """Make the plugin. ``iface`` is None (or a stub) under ``qgis_process``."""
    # One data home per QGIS session, the running profile's: core cannot ask QGIS.
    home.set_session_profile(QgsApplication.qgisSettingsDirPath())
    # onnxruntime lives in a private folder of the data home: put it on the
    # path before anything of ours can import it.
    deps.ensure_on_path(data_home())
    from .plugin import CloudMaskImproverPlugin

    return CloudMaskImproverPlugin(iface)
