"""Weights fetched on first use: a known model file downloaded into a model folder, checked, crash-safe.

A file is known by ``KNOWN_FILES`` (models/known_files.py): its name, the ComfyUI model folder it belongs in, where it lives (a Hugging Face
repository, or Meta's file host for the SAM checkpoints) and, where the published value could be verified, its size
and sha256. ``download(known, folder)`` then

* reads the token the way ``huggingface_hub`` does (``HF_TOKEN``, else the file ``huggingface-cli login`` wrote) and
  the hub's address from ``HF_ENDPOINT`` (a mirror); Meta's host from ``SAM_DOWNLOAD_ENDPOINT``;
* takes a lock beside the file (``.NAME.lock``, an OS file lock: two queued graphs, or two ComfyUI servers on one
  models folder, never download one file twice; the second waits, then finds the file; the OS releases the lock of a
  killed process, so no stale lock can block a later download);
* writes into a hidden ``.NAME.partial`` and resumes it after an interrupt or a killed server (HTTP ``Range``);
* checks the size and sha256 (the pinned value, else the hub's own LFS sha256 from its ``X-Linked-Etag`` header), and
  only then gives the file its name (``models/publish.py``): nothing ever sits under the final name that is not whole
  and checked. A checksum mismatch deletes the partial copy (resuming it cannot repair it);
* reports progress through ``progress(done_bytes, total_bytes)`` (the node drives ComfyUI's progress bar with it;
  an exception raised there, e.g. ComfyUI's interrupt, stops the download and keeps the partial copy to resume);
* fails within ``timeout`` seconds of silence with a ``DownloadError`` naming the file, its URL and the folder, and
  for a gated repository (401/403) with a ``GatedRepoError`` naming the licence page, how to accept it, where the
  token goes and what to do offline.

Plain ``urllib`` moves the bytes (redirects followed by hand, so the token is sent only to the hub's own host, never
to the storage host it redirects to); ``huggingface_hub`` (installed with diffusers) builds the URLs and finds the
token. Not its ``build_hf_headers``: since 2.x that fetches ``/api/agent-harnesses`` from the hub on first use, one
more request that could hang without a network.
"""

import errno
import hashlib
import http.client
import os
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from .inputs import PACKAGE
from .known_files import HUB, KNOWN_FILES, KnownFile, describe, hub_endpoint, known_in, model_list_entry  # noqa: F401 (re-exported)
from .publish import fsync_path, publish_file

TIMEOUT = 15.0  # seconds without a byte before a download is given up (connect, or a stalled transfer)
CHUNK = 1 << 20
PARTIAL, LOCK = ".partial", ".lock"
DOCS = "docs/weights.md"
USER_AGENT = "comfyui-diception-persam"


class DownloadError(RuntimeError):
    """A download failed; the message names the file, its URL, the folder, the cause and what to do."""


class GatedRepoError(DownloadError):
    """The file's repository needs an accepted licence and a token."""


DownloadError.__module__ = GatedRepoError.__module__ = PACKAGE  # path-free type names for API clients (models.inputs)


def hub_token():
    from huggingface_hub import get_token

    return os.environ.get("HF_TOKEN") or get_token()


def by_hand(known: KnownFile, folder) -> str:
    return (f"Or download it by hand ({known.public_url}) and place it in {str(folder)!r} as {known.name} "
            f"(the table in {DOCS} lists every file and folder).")


def gated_message(known: KnownFile, folder, status: int) -> str:
    what = ("no Hugging Face token was sent" if status == 401 else
            "the token sent has not been granted access (licence not accepted, or a token of another account)")
    return (
        f"{known.name}: the Hugging Face repository {known.repo} is gated and refused the download (HTTP {status}: "
        f"{what}). To download it: 1. log in at {HUB}, open the licence page {known.licence_page} and accept its "
        f"conditions; 2. create a read token at {HUB}/settings/tokens; 3. give it to ComfyUI: set HF_TOKEN=<token> in "
        f"the environment that starts ComfyUI, or run `huggingface-cli login` (`hf auth login`) once as the user that "
        f"runs ComfyUI; then queue again. Offline: download {known.name} on a machine that has access and place it in "
        f"{str(folder)!r} ({DOCS} lists every file and its folder). URL: {known.url}"
    )


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None  # followed by hand in _open, so that credentials stay on the hub's own host


_OPENER = urllib.request.build_opener(_NoRedirect)


def _open(known: KnownFile, url: str, offset: int, timeout: float):
    """GET ``url`` from byte ``offset``; redirects followed by hand (max 10). Returns the response and the
    expected (sha256, size) the hub announced (X-Linked-Etag / X-Linked-Size), or (None, None)."""
    host = urllib.parse.urlsplit(url).netloc
    announced = (None, None)
    for _ in range(10):
        headers = {"Accept-Encoding": "identity", "User-Agent": USER_AGENT}
        token = hub_token() if known.repo and urllib.parse.urlsplit(url).netloc == host else None
        if token:
            headers["Authorization"] = f"Bearer {token}"
        if offset:
            headers["Range"] = f"bytes={offset}-"
        try:
            response = _OPENER.open(urllib.request.Request(url, headers=headers), timeout=timeout)
        except urllib.error.HTTPError as e:
            if e.code in (301, 302, 303, 307, 308) and e.headers.get("Location"):
                etag = (e.headers.get("X-Linked-Etag") or "").strip('"').lower()
                size = e.headers.get("X-Linked-Size")
                if len(etag) == 64:
                    announced = (etag, int(size) if size and size.isdigit() else None)
                url = urllib.parse.urljoin(url, e.headers["Location"])
                e.close()
                continue
            raise
        etag = (response.headers.get("X-Linked-Etag") or "").strip('"').lower()
        if len(etag) == 64 and announced == (None, None):
            size = response.headers.get("X-Linked-Size")
            announced = (etag, int(size) if size and size.isdigit() else None)
        return response, announced
    raise urllib.error.URLError("too many redirects")


class FileLock:
    """An exclusive OS lock on ``path`` (created if absent), held while the block runs: across threads, processes
    and servers on one folder. A killed holder's lock is released by the OS (no stale lock). While another process
    holds it, ``waiting()`` is called every ``poll`` seconds (it may raise, e.g. ComfyUI's interrupt)."""

    def __init__(self, path: Path, waiting=None, poll=0.2):
        self.path, self.waiting, self.poll, self.fd = Path(path), waiting, poll, None

    def __enter__(self):
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                while not _try_lock(fd):
                    if self.waiting:
                        self.waiting()
                    time.sleep(self.poll)
                # the holder before us may have removed the file: then we hold a lock on a name nobody sees; retry
                if os.path.exists(self.path) and os.stat(self.path).st_ino == os.fstat(fd).st_ino:
                    self.fd = fd
                    return self
            except BaseException:
                os.close(fd)
                raise
            os.close(fd)

    def __exit__(self, *exc):
        try:
            os.unlink(self.path)  # removed while still locked: a waiter sees the inode change and retries
        except OSError:
            pass
        _unlock(self.fd)
        os.close(self.fd)


try:
    import fcntl

    def _try_lock(fd) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except OSError as e:
            if e.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                return False
            raise

    def _unlock(fd) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)
except ImportError:  # Windows
    import msvcrt

    def _try_lock(fd) -> bool:
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
            return True
        except OSError:
            return False

    def _unlock(fd) -> None:
        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)


def partial_path(folder: Path, name: str) -> Path:
    return Path(folder) / f".{name}{PARTIAL}"


def download(known: KnownFile, folder, progress=None, timeout: float = TIMEOUT, waiting=None) -> Path:
    """Fetch ``known`` into ``folder`` (created if absent) unless it is there; returns the file's path.

    ``progress(done, total)``: bytes so far and in all (total None while unknown). ``waiting()``: called while another
    process downloads the same file. Raises ``DownloadError`` / ``GatedRepoError`` with an actionable message."""
    folder = Path(folder)
    final = folder / known.name
    if final.exists():
        return final
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        raise DownloadError(f"{known.name} is not in {str(folder)!r} and HF_HUB_OFFLINE is set, so it was not "
                            f"downloaded from {known.url}. {by_hand(known, folder)}")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DownloadError(f"{known.name}: cannot create the folder {str(folder)!r} ({e.strerror}). {by_hand(known, folder)}") from None
    with FileLock(folder / f".{known.name}{LOCK}", waiting):
        if final.exists():  # another process finished it while we waited
            return final
        _fetch(known, folder, final, progress, timeout)
    return final


def _fetch(known, folder, final, progress, timeout) -> None:
    partial = partial_path(folder, known.name)
    url = known.url
    offset = partial.stat().st_size if partial.exists() else 0
    if known.size is not None and offset > known.size:
        partial.unlink()
        offset = 0
    try:
        response, (hub_sha, hub_size) = _open(known, url, offset, timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and offset:  # the partial copy is already whole: check it below
            response, hub_sha, hub_size = None, None, None
        elif e.code in (401, 403) and known.repo:
            raise GatedRepoError(gated_message(known, folder, e.code)) from None
        elif e.code == 404:
            raise DownloadError(f"{known.name}: not found at {url} (HTTP 404); the file may have moved. "
                                f"{by_hand(known, folder)}") from None
        else:
            raise DownloadError(f"{known.name}: the server answered HTTP {e.code} ({e.reason}) for {url}; nothing was "
                                f"written under {str(final)!r}. Try again later. {by_hand(known, folder)}") from None
    except (OSError, http.client.HTTPException) as e:  # URLError is an OSError
        raise DownloadError(network_message(known, url, folder, e)) from None
    sha256, size = known.sha256 or hub_sha, known.size or hub_size
    if response is not None:
        with response:
            if offset and response.status != 206:  # the server ignored Range: start again
                offset = 0
            length = response.headers.get("Content-Length")
            total = size or ((offset + int(length)) if length and length.isdigit() else None)
            _receive(known, response, partial, offset, total, progress, url, folder)
    done = partial.stat().st_size
    _check(known, partial, done, size, sha256, url, folder)
    publish_file(partial, final)
    fsync_path(folder)


def network_message(known, url, folder, error) -> str:
    reason = getattr(error, "reason", None) or error
    if isinstance(reason, (socket.timeout, TimeoutError)) or "timed out" in str(reason):
        reason = "no answer (timed out)"
    return (f"{known.name}: could not download it from {url} into {str(folder)!r}: {reason}. Check the network "
            f"connection (a proxy: HTTPS_PROXY; a Hugging Face mirror: HF_ENDPOINT) and queue again; a partial "
            f"download is resumed. {by_hand(known, folder)}")


def _receive(known, response, partial, offset, total, progress, url, folder) -> None:
    done = offset
    mode = "ab" if offset else "wb"
    with open(partial, mode) as out:
        if progress:
            progress(done, total)
        while True:
            try:
                chunk = response.read(CHUNK)
            except (OSError, http.client.HTTPException) as e:  # a stalled or broken transfer: what came is kept
                out.flush()
                os.fsync(out.fileno())
                raise DownloadError(network_message(known, url, folder, e) + f" ({done} bytes kept for resuming)") from None
            if not chunk:
                break
            out.write(chunk)
            done += len(chunk)
            if total is not None and done > total:
                break  # more than announced: caught by the size check
            if progress:
                progress(done, total)
        out.flush()
        os.fsync(out.fileno())


def _check(known, partial, done, size, sha256, url, folder) -> None:
    if size is not None and done != size:
        if done > size:
            partial.unlink()
        what = "longer" if done > size else "shorter"
        raise DownloadError(f"{known.name}: the download from {url} is {what} than expected ({done} bytes, expected "
                            f"{size}); " + ("the copy was deleted; queue again." if done > size else
                                            "the transfer ended early; queue again to resume it."))
    if sha256:
        digest = sha256_of(partial)
        if digest != sha256:
            partial.unlink()
            raise DownloadError(f"{known.name}: the download from {url} is corrupt: its sha256 is {digest}, expected "
                                f"{sha256}. The copy was deleted and nothing was written under its name in "
                                f"{str(folder)!r}; queue again, or {by_hand(known, folder)[3:]}")


def sha256_of(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


if __name__ == "__main__":  # the documented `python -m models.weights_download`
    print(describe())
