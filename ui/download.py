"""Download a pinned model release through QGIS's network stack (so proxy settings apply).

The release is found the way pip finds it: on the simple-index page of the
package, at the index the user's pip is configured for (``core.fetch.index_url``:
``PIP_INDEX_URL``, pip's configuration, else pip's default). Reading pip's
configuration starts a Python, a second or more: that happens in a thread of its
own, so the dialog never freezes while it looks. The release is the
card's ``source`` (a ``core.fetch.PinnedRelease``); the file is streamed to a
temporary name beside its place in the cache and verified by ``core.fetch``
before it is moved there, exactly as setup's downloads are.
"""

from __future__ import annotations

import re
import threading
from contextlib import suppress
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urldefrag, urljoin

from qgis.core import QgsFileDownloader, QgsNetworkAccessManager
from qgis.PyQt import sip
from qgis.PyQt.QtCore import QObject, QUrl, pyqtSignal
from qgis.PyQt.QtNetwork import QNetworkReply, QNetworkRequest

from ..core import (
    INSTALL_AGAIN,
    FetchError,
    FileInUseError,
    PinnedRelease,
    index_url,
    partial_path,
    remove_file,
    sha256_of,
    swap,
    verify_download,
)


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
    # From the lookup thread to the main thread: the index page's URL, or why there is none.
    _index_found = pyqtSignal(str, str)

    def __init__(self, source: PinnedRelease, cache: Path, parent=None):
        super().__init__(parent)
        self.source = source
        self.cache = Path(cache)
        self.target = self.cache / source.filename
        self.partial = Path(partial_path(self.target, ".part"))
        self.reply = None  # the index page request
        self.downloader = None  # the file's QgsFileDownloader
        self.done = False
        self.cancelled = False
        self._index_found.connect(self._request_page)

    def start(self) -> None:
        if self.target.exists() and sha256_of(self.target) == self.source.sha256:
            self._finish(str(self.target))  # cached and verified: no network needed
            return
        threading.Thread(target=self._look_up_index, name="cloudmask-index", daemon=True).start()

    def _look_up_index(self) -> None:
        """In a thread of its own: which index (pip's configuration), then back to the main thread."""
        try:
            page, problem = project_page(index_url(), self.source.package), ""
        except Exception as err:  # noqa: BLE001 - no pip at all: say so rather than crash
            page, problem = "", f"Cannot tell which package index to use ({err})."
        with suppress(RuntimeError):  # the dialog, and this object with it, was closed meanwhile
            self._index_found.emit(page, problem)

    def _request_page(self, page: str, problem: str) -> None:
        if self.done or self.cancelled:
            return
        if problem:
            self._fail(problem)
            return
        self.reply = QgsNetworkAccessManager.instance().get(QNetworkRequest(QUrl(page)))
        self.reply.finished.connect(lambda: self._page_done(page))

    def cancel(self) -> None:
        if self.done:
            return
        self.cancelled = True
        if self.downloader is not None:
            self.downloader.cancelDownload()
        elif self.reply is not None:
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
            self._fail(
                f"{self.source.filename} is not listed on {page}: the index does not "
                f"have {self.source.package} {self.source.version}."
            )
            return
        self.cache.mkdir(parents=True, exist_ok=True)
        self.reply = None
        # QGIS's own downloader: proxies, authentication and redirects as QGIS is set up.
        self.downloader = QgsFileDownloader(QUrl(url), str(self.partial), "", True)
        sip.transferto(self.downloader, None)  # it deletes itself when done: C++ owns it, not Python
        self.downloader.downloadProgress.connect(self._progress)
        self.downloader.downloadError.connect(lambda errors: self._file_failed(url, errors))
        self.downloader.downloadCanceled.connect(lambda: self._file_failed(url, ["cancelled"]))
        self.downloader.downloadCompleted.connect(self._file_done)
        self.downloader.startDownload()

    def _progress(self, received, total) -> None:
        self.progress.emit(int(received), int(total))

    def _file_failed(self, url: str, errors) -> None:
        self.downloader = None
        remove_file(self.partial)
        self._fail(f"Download of {url} failed: {'; '.join(errors)}")

    def _file_done(self, *_) -> None:
        self.downloader = None
        try:
            verify_download(self.partial, self.source.sha256, self.source.filename, "nothing was installed")
        except FetchError as err:
            remove_file(self.partial)
            self._fail(str(err))
            return
        try:
            swap(self.partial, self.target, INSTALL_AGAIN)
        except FileInUseError as err:
            remove_file(self.partial)
            self._fail(str(err))
            return
        self._finish(str(self.target))

    def _finish(self, path: str) -> None:
        self.done = True
        self.finished.emit(path)

    def _fail(self, message: str) -> None:
        self.done = True
        self.failed.emit(message)
