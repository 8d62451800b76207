"""pip goes through QGIS's proxy (Settings > Options > Network), as the model downloads do.

A small HTTP proxy on 127.0.0.1 serves the fake package index of fake_wheels.py for a
host name that does not exist: pip can reach it only through the proxy, so an install
that succeeds went through it.
"""

import http.server
import threading
from functools import partial
from typing import ClassVar
from urllib.parse import urlsplit

import pytest
from qgis.core import QgsNetworkAccessManager, QgsSettings
from qgis.PyQt.QtNetwork import QNetworkProxy

from cloud_mask_improver.core.runtime import deps
from cloud_mask_improver.ui import proxy, tasks

pytest_plugins = ["fake_wheels"]  # its fixture: index (for its environment: no pip config, no cache)
UNREACHABLE_INDEX = "http://index.invalid/"


class ProxyHandler(http.server.SimpleHTTPRequestHandler):
    """Answers proxy requests (``GET http://host/path``) from a folder, and counts them."""

    seen: ClassVar[list] = []

    def translate_path(self, path):
        self.seen.append(path)
        return super().translate_path(urlsplit(path).path)

    def log_message(self, *args):
        pass


@pytest.fixture
def qgis_proxy(tmp_path, index, monkeypatch):
    """A proxy serving the fake index, set in QGIS's settings as a user would set it."""
    _url, index_server = index
    ProxyHandler.seen = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(ProxyHandler, directory=str(index_server.root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    settings = QgsSettings()
    keys = (
        "proxy/proxyEnabled",
        "proxy/proxyType",
        "proxy/proxyHost",
        "proxy/proxyPort",
        "proxy/proxyUser",
        "proxy/proxyPassword",
    )
    before = {key: settings.value(key) for key in keys}
    for key, value in zip(keys, (True, "HttpProxy", "127.0.0.1", str(server.server_address[1]), "ann", "p@ss word")):
        settings.setValue(key, value)
    QgsNetworkAccessManager.instance().setupDefaultProxyAndCache()  # what OK in the Options dialog does
    monkeypatch.setenv("PIP_INDEX_URL", UNREACHABLE_INDEX)
    monkeypatch.setenv("PIP_TRUSTED_HOST", "index.invalid")  # plain http, as the fake index is
    monkeypatch.delenv("PIP_FIND_LINKS", raising=False)  # only the index, only through the proxy
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "NO_PROXY", "no_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    yield server
    for key, value in before.items():
        settings.remove(key) if value is None else settings.setValue(key, value)
    QgsNetworkAccessManager.instance().setupDefaultProxyAndCache()
    server.shutdown()
    server.server_close()


def test_qgis_proxy_settings_become_pips_proxy_url(qgis_app, qgis_proxy):
    port = qgis_proxy.server_address[1]
    assert proxy.proxy_url() == f"http://ann:p%40ss%20word@127.0.0.1:{port}"


def test_no_proxy_in_qgis_leaves_pip_to_its_own_settings(qgis_app):
    QgsNetworkAccessManager.instance().setFallbackProxyAndExcludes(
        QNetworkProxy(QNetworkProxy.ProxyType.NoProxy), [], []
    )
    assert proxy.proxy_url() == ""


def test_the_onnxruntime_install_goes_through_qgis_proxy(qgis_app, qtbot, tmp_path, qgis_proxy):
    folder = tmp_path / "python"
    finished = []
    tasks.EVENTS.runtime_finished.connect(lambda ok, text: finished.append((ok, text)))
    task = tasks.install_runtime(folder)
    qtbot.waitUntil(lambda: bool(finished), timeout=120_000)
    assert deps.installed_version(folder) == deps.ONNXRUNTIME_VERSION, task.message
    assert any(path.startswith(UNREACHABLE_INDEX) for path in ProxyHandler.seen)


def test_gpu_and_cpu_switches_go_through_the_proxy_too(tmp_path, qgis_app, qgis_proxy):
    folder = tmp_path / "python"
    status = deps.install_cpu_runtime(folder, UNREACHABLE_INDEX, proxy=proxy.proxy_url())
    assert status.available, status.problem
    assert deps.installed_runtime(folder) == deps.InstalledRuntime("cpu", deps.ONNXRUNTIME_VERSION)
