"""Download a pinned model release through QGIS's network stack (so proxy settings apply).

The release is found the way pip finds it: on the simple-index page of the
package, at the index the user's pip is configured for (``PIP_INDEX_URL``,
pip's configuration files, else pip's default). No index host is written
here. The file is streamed to disk and its sha256 checked before use.
"""

from __future__ import annotations

import os
import re
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urldefrag, urljoin

from qgis.core import QgsNetworkAccessManager
from qgis.PyQt.QtCore import QObject, QUrl, pyqtSignal
from qgis.PyQt.QtNetwork import QNetworkReply, QNetworkRequest

from ..core.cards import Source
from ..core.fetch import sha256_of


def index_url() -> str:
    """The package index pip would use here: environment, then pip's config, then pip's default."""
    if os.environ.get("PIP_INDEX_URL"):
        return os.environ["PIP_INDEX_URL"]
    configured = _pip_config_index()
    if configured:
        return configured
    from pip._internal.models.index import PyPI
    return PyPI.simple_url


def _pip_config_index() -> str:
    """``index-url`` from pip's configuration files, or '' (pip's internals may change: then '')."""
    try:
        from pip._internal.configuration import Configuration
        config = Configuration(isolated=False)
        config.load()
        values = dict(config.items())
    except Exception:  # noqa: BLE001 - any failure here means "not configured"
        return ""
    for key in ("download.index-url", "install.index-url", "global.index-url"):
        if values.get(key):
            return str(values[key])
    return ""


def project_page(index: str, package: str) -> str:
    """The simple-index page of a package (names normalised as pip does, PEP 503)."""
    return index.rstrip("/") + "/" + re.sub(r"[-_.]+", "-", package).lower() + "/"


class _Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.hrefs: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag == "a":
            href = dict(attrs).get("href")
            if href:
                self.hrefs.append(href)


def find_link(page_html: str, page_url: str, filename: str) -> str:
    """Absolute URL of ``filename`` on a simple-index page, or '' when it is not listed."""
    parser = _Links()
    parser.feed(page_html)
    for href in parser.hrefs:
        url, _fragment = urldefrag(urljoin(page_url, href))
        if url.rsplit("/", 1)[-1] == filename:
            return url
    return ""


class ReleaseDownload(QObject):
    """Fetch one pinned file: index page, then the file, then the checksum.

    Emits ``progress(received, total)``, then ``finished(path)`` or ``failed(message)``.
    """

    progress = pyqtSignal(int, int)
    finished = pyqtSignal(str)
    failed = pyqtSignal(str)

    def __init__(self, source: Source, cache: Path, parent=None):
        super().__init__(parent)
        self.source = source
        self.cache = Path(cache)
        self.target = self.cache / source.filename
        self.partial = self.cache / (source.filename + ".part")
        self.reply = None
        self.handle = None
        self.done = False

    def start(self) -> None:
        if self.target.exists() and sha256_of(self.target) == self.source.sha256:
            self._finish(str(self.target))  # cached and verified: no network needed
            return
        try:
            page = project_page(index_url(), self.source.package)
        except Exception as err:  # noqa: BLE001 - no pip at all: say so rather than crash
            self._fail(f"Cannot tell which package index to use ({err}).")
            return
        self.reply = QgsNetworkAccessManager.instance().get(QNetworkRequest(QUrl(page)))
        self.reply.finished.connect(lambda: self._page_done(page))

    def cancel(self) -> None:
        if self.reply is not None and not self.done:
            self.reply.abort()

    def _page_done(self, page: str) -> None:
        reply = self.reply
        if reply.error() != QNetworkReply.NetworkError.NoError:
            self._fail(f"Could not read the package index page {page}: {reply.errorString()}")
            return
        html = bytes(reply.readAll()).decode("utf-8", "replace")
        reply.deleteLater()
        url = find_link(html, page, self.source.filename)
        if not url:
            self._fail(f"{self.source.filename} is not listed on {page}: the index does not "
                       f"have {self.source.package} {self.source.version}.")
            return
        self.cache.mkdir(parents=True, exist_ok=True)
        self.handle = open(self.partial, "wb")  # noqa: SIM115 - closed when the reply ends
        self.reply = QgsNetworkAccessManager.instance().get(QNetworkRequest(QUrl(url)))
        self.reply.readyRead.connect(self._write)
        self.reply.downloadProgress.connect(lambda got, total: self.progress.emit(int(got), int(total)))
        self.reply.finished.connect(lambda: self._file_done(url))

    def _write(self) -> None:
        self.handle.write(bytes(self.reply.readAll()))

    def _file_done(self, url: str) -> None:
        reply = self.reply
        self._write()
        self.handle.close()
        if reply.error() != QNetworkReply.NetworkError.NoError:
            self.partial.unlink(missing_ok=True)
            self._fail(f"Download of {url} failed: {reply.errorString()}")
            return
        reply.deleteLater()
        actual = sha256_of(self.partial)
        if actual != self.source.sha256:
            self.partial.unlink(missing_ok=True)
            self._fail(f"{self.source.filename}: sha256 is {actual}, expected {self.source.sha256}. "
                       "The download is not the pinned release; nothing was installed.")
            return
        os.replace(self.partial, self.target)
        self._finish(str(self.target))

    def _finish(self, path: str) -> None:
        self.done = True
        self.finished.emit(path)

    def _fail(self, message: str) -> None:
        self.done = True
        self.failed.emit(message)
