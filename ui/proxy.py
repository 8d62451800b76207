"""QGIS's proxy, for pip.

Model downloads go through QGIS's network manager and so through the proxy set
in Settings > Options > Network. pip is a separate program that knows nothing of
QGIS's settings: without this, on a network that only lets a proxy out, the
model install works and the onnxruntime install fails. QGIS's network manager
holds the proxy it uses (with the user name and password of an authentication
configuration already filled in); this turns it into the URL pip understands.
"""

from __future__ import annotations

from urllib.parse import quote

from qgis.core import QgsNetworkAccessManager
from qgis.PyQt.QtNetwork import QNetworkProxy

# Proxy types pip can use, and their URL schemes. QGIS's "Default proxy" (the system's) is
# left to pip, which reads the system's settings itself; SOCKS needs PySocks beside pip.
_SCHEMES = {
    QNetworkProxy.ProxyType.HttpProxy: "http",
    QNetworkProxy.ProxyType.HttpCachingProxy: "http",
    QNetworkProxy.ProxyType.Socks5Proxy: "socks5",
}


def proxy_url() -> str:
    """The proxy QGIS uses, as a URL (scheme, then user name and password if any, host, port), or ''.

    Call it on QGIS's main thread: the network manager of another thread has no settings."""
    proxy = QgsNetworkAccessManager.instance().fallbackProxy()
    scheme = _SCHEMES.get(proxy.type())
    if scheme is None or not proxy.hostName():
        return ""
    login = ""
    if proxy.user():
        login = quote(proxy.user(), safe="")
        if proxy.password():
            login += ":" + quote(proxy.password(), safe="")
        login += "@"
    port = f":{proxy.port()}" if proxy.port() > 0 else ""
    return f"{scheme}://{login}{proxy.hostName()}{port}"
