"""The loaders' ``download`` choice: a known model file that is absent is fetched into its ComfyUI model folder
(``models/weights_download.py``), with ComfyUI's progress bar and interrupt.

Why an option on the loaders, not a companion "Download" node: ComfyUI checks a combo value against the loader's own
list before anything runs, so the loader must list the known files even while they are absent; the loader knows which
file is selected (a separate node would need the same choice made twice and a link to run first); and the template
then runs as it is, while the Missing Models panel points at the loader whose file it lists.
"""

import logging
import os

import folder_paths

from ..models import weights_download
from . import comfy_adapter, model_folders

TIMEOUT_VARIABLE = "DICEPTION_DOWNLOAD_TIMEOUT"  # seconds of silence before a download is given up (default 15)
DOWNLOAD_INPUT = ("BOOLEAN", {
    "default": True,
    "tooltip": "a selected model file that is not on disk yet (the names listed although absent) is downloaded on first "
               "use into its ComfyUI model folder, with a progress bar; resumed if interrupted, checked (size, sha256) "
               "before it gets its name. Off: never download (an absent file is an error saying where to put it). "
               "SD3-medium is gated: accept its licence on Hugging Face and set HF_TOKEN (docs/weights.md)",
})
log = logging.getLogger(__name__)


MARK = " (download)"  # an absent known file in a loader's list: "sam_vit_h_4b8939.pth (download)"


def with_known(files: list, folder: str, prefix: str = "") -> list:
    """The files on disk, then each known file of ``folder`` that is absent, marked " (download)". The mark keeps the
    plain name out of the list while the file is absent, so that the frontend's Missing Models panel, which reports a
    widget value that is not in the list, still reports a template's absent file (with its link); the loader accepts
    the plain name too (``validate``) and downloads it."""
    names = set(files)
    return files + [prefix + n + MARK for n in weights_download.known_in(folder) if prefix + n not in names]


def plain(value: str) -> str:
    return value[: -len(MARK)] if value.endswith(MARK) else value


def validate(input_name: str, value, options: list, folder: str, prefix: str = ""):
    """ComfyUI's check of a loader's file input (``VALIDATE_INPUTS``, which replaces its "value not in list" check):
    a listed value, or the plain name of a known file of ``folder`` (absent: downloaded when the node runs)."""
    if value is None or value in options:
        return True  # None: a link, whose value is checked when the node runs
    name = plain(value) if isinstance(value, str) else None
    known = weights_download.KNOWN_FILES.get(name[len(prefix):]) if name and name.startswith(prefix) else None
    if known is not None and known.folder == folder:
        return True
    shown = ", ".join(repr(o) for o in options[:12]) + (", ..." if len(options) > 12 else "")
    return (f"{input_name}: {value!r} is neither on disk nor a file the pack can download into models/{folder}; "
            f"expected one of {shown or 'nothing (no file found)'}")


def download_folder(folder: str) -> str:
    """Where a download goes: the first folder ComfyUI lists for that kind (ComfyUI/models/<kind> unless
    extra_model_paths.yaml puts another first)."""
    return folder_paths.get_folder_paths(folder)[0]


class ProgressBar:
    """``progress(done, total)`` for the engine → ComfyUI's progress bar (created when the size is known)."""

    def __init__(self):
        self.progress = None

    def __call__(self, done: int, total) -> None:
        total = max(total or done + 1, 1)
        if self.progress is None:
            self.progress = comfy_adapter.Progress(total, min_interval=0.25)
        self.progress(min(done, total), total)


def fetch(folder: str, name: str, download: bool, input_name: str, find=None) -> str:
    """The full path of ``name`` in the model folder ``folder`` (looked up by ``find(name)``, by default
    ``model_folders.find``); downloaded first when absent, known and allowed."""
    name = plain(name)
    try:
        return find(name) if find else model_folders.find(folder, name)
    except FileNotFoundError as missing:
        known = weights_download.KNOWN_FILES.get(name)
        if known is None or known.folder != folder:
            raise
        target = download_folder(folder)
        if not download:
            raise FileNotFoundError(
                f"{input_name}: {name} is not in the {folder} model folders and download is off. Turn download on to "
                f"fetch it from {known.public_url}, or place it in {target!r} by hand ({weights_download.DOCS})."
            ) from missing
    log.info("Downloading %s from %s into %s", name, known.url, target)
    path = weights_download.download(
        known, target, progress=ProgressBar(), waiting=comfy_adapter.check_interrupt,
        timeout=float(os.environ.get(TIMEOUT_VARIABLE) or weights_download.TIMEOUT),
    )
    return str(path)
