"""Cloud Mask Improver: QGIS loads the plugin through ``classFactory``.

Nothing here imports QGIS at module level, so ``cloud_mask_improver.core`` can be
imported where QGIS is absent (the ``cloudmask`` command, Dask workers).
"""

if __package__:  # always, for QGIS and every import by name
    from .core.runtime import deps, home
# else: pytest >= 8 imported this file alone, by path, while setting up the repository
# folder as a package of the test tree; in a checkout whose folder name is no Python name
# ("cloud-mask-improver") it has no package to be relative to. Nothing here is used then.


def data_home():
    """The plugin's data home for the running QGIS profile (or ``$CLOUDMASK_HOME``)."""
    return home.data_home()


def classFactory(iface):
    """Make the plugin. ``iface`` is None (or a stub) under ``qgis_process``."""
    from qgis.core import QgsApplication  # here, not at import: core stays usable without QGIS

    # One data home per QGIS session, the running profile's: core cannot ask QGIS.
    home.set_session_profile(QgsApplication.qgisSettingsDirPath())
    # onnxruntime lives in a private folder of the data home: put it on the
    # path before anything of ours can import it.
    deps.ensure_on_path(data_home())
    from .plugin import CloudMaskImproverPlugin

    return CloudMaskImproverPlugin(iface)
