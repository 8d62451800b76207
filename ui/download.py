"""Download a pinned model release through QGIS's network stack (so proxy settings apply).

The release is found the way pip finds it: on the simple-index page of the
package, at the index the user's pip is configured for (``core.fetch.index_url``:
``PIP_INDEX_URL``, pip's configuration, else pip's default). The release is the
card's ``source`` (a ``core.fetch.PinnedRelease``); the file is streamed to a
temporary name beside its place in the cache and verified by ``core.fetch``
before it is moved there, exactly as setup's downloads are.
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

from ..core.fetch import FetchError, PinnedRelease, index_url, sha256_of, verify
from ..core.staging import partial_path, remove


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

    def __init__(self, source: PinnedRelease, cache: Path, parent=None):
        super().__init__(parent)
        self.source = source
        self.cache = Path(cache)
        self.target = self.cache / source.filename
        self.partial = Path(partial_path(self.target, ".part"))
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
            remove(self.partial)
            self._fail(f"Download of {url} failed: {reply.errorString()}")
            return
        reply.deleteLater()
        try:
            verify(self.partial, self.source.sha256, self.source.filename, "nothing was installed")
        except FetchError as err:
            remove(self.partial)
            self._fail(str(err))
            return
        os.replace(self.partial, self.target)
        self._finish(str(self.target))

    def _finish(self, path: str) -> None:
        self.done = True
        self.finished.emit(path)

    def _fail(self, message: str) -> None:
        self.done = True
        self.failed.emit(message)
