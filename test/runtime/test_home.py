"""One data home per QGIS session: the running profile's (or $CLOUDMASK_HOME), everywhere."""

import pytest

from cloud_mask_improver.core.runtime import home


@pytest.fixture
def session_profile(monkeypatch, tmp_path):
    """QGIS started on another profile (--profile work --profiles-path ...), no CLOUDMASK_HOME."""
    monkeypatch.delenv(home.ENV_VAR, raising=False)
    monkeypatch.setattr(home, "_session_profile", None)
    profile = tmp_path / "profiles" / "work"
    home.set_session_profile(str(profile) + "/")  # QgsApplication.qgisSettingsDirPath() ends with '/'
    return profile


def test_every_caller_gets_the_running_profiles_home(session_profile):
    expected = session_profile / home.FOLDER_NAME
    assert home.data_home() == expected
    assert home.models_dir() == expected / "models"  # the algorithms and the model manager
    assert home.python_dir() == expected / "python"  # onnxruntime, and the pip command shown to users
    assert home.cache_dir() == expected / "cache"


def test_cloudmask_home_still_wins(session_profile, monkeypatch, tmp_path):
    monkeypatch.setenv(home.ENV_VAR, str(tmp_path / "mine"))
    assert home.data_home() == tmp_path / "mine"


def test_outside_qgis_the_default_profile(monkeypatch, tmp_path):
    monkeypatch.delenv(home.ENV_VAR, raising=False)
    monkeypatch.setattr(home, "_session_profile", None)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    monkeypatch.setattr(home.sys, "platform", "linux")
    assert home.data_home() == tmp_path / "QGIS" / "QGIS3" / "profiles" / "default" / home.FOLDER_NAME


def test_the_plugin_records_the_profile_qgis_runs_with(monkeypatch, tmp_path):
    """classFactory is where QGIS's profile becomes the session's (core cannot ask QGIS)."""
    from qgis.core import QgsApplication

    import cloud_mask_improver

    monkeypatch.delenv(home.ENV_VAR, raising=False)
    monkeypatch.setattr(home, "_session_profile", None)
    monkeypatch.setattr(cloud_mask_improver.deps, "ensure_on_path", lambda *a: False)
    cloud_mask_improver.classFactory(None)
    assert home.data_home() == home.data_home(QgsApplication.qgisSettingsDirPath())
    assert home.data_home() != home.default_profile_dir() / home.FOLDER_NAME
