"""Crash-safe saves: a file or a folder appears under its final name only when it is complete, and two processes
writing into one output folder (two ComfyUI instances on a multi-GPU box) never take the same name.

Everything is first written under a hidden temporary name in the folder it will end up in (``.NAME.<random>.partial``),
flushed to disk, and then published in one step:

* a file by ``os.link(temp, final)``, which fails when ``final`` exists: the link is the claim of the number, and
  the name holds the complete bytes from the moment it exists (no empty placeholder ever shows);
* a folder by ``os.rename(temp, final)``, which fails when ``final`` exists and is not empty (POSIX; on Windows
  whenever it exists): the dataset is renamed into place as the last step.

A process killed in between leaves only its hidden ``*.partial`` temporary (safe to delete); a failure that Python
sees (disk full, read-only) removes it and raises ``SaveError`` naming the input, the folder, the cause and what
to do. On a file system without hard links (FAT, some network shares) a file is renamed after a check that its
name is free: there, two processes saving the same name in the same millisecond could still collide.
"""

import errno
import os
import secrets
import shutil
from pathlib import Path

from .inputs import PACKAGE
from .output_paths import MAX_NAME_BYTES, byte_length

PARTIAL = ".partial"
NO_HARD_LINKS = {errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EMLINK, errno.ENOSYS}
TAKEN = {errno.EEXIST, errno.ENOTEMPTY, errno.ENOTDIR, errno.EISDIR}


class SaveError(OSError):
    """A save failed: the message names the input, the folder and the cause, and says what was left behind."""


SaveError.__module__ = PACKAGE  # path-free type name for API clients (see models.inputs)


CAUSES = {  # errno → (what happened, what to do)
    errno.ENOSPC: ("the disk is full (no space left on device)",
                   "free space on that disk, or choose another output folder (ComfyUI's --output-directory)"),
    errno.EROFS: ("the file system is read-only",
                  "choose another output folder on a writable disk (ComfyUI's --output-directory)"),
    errno.EACCES: ("permission denied",
                   "choose another output folder (ComfyUI's --output-directory) or let ComfyUI's user write there"),
    errno.ENAMETOOLONG: ("the name is too long for the file system", "give a shorter name"),
}
CAUSES[errno.EDQUOT] = ("the disk quota is exceeded", CAUSES[errno.ENOSPC][1])
CAUSES[errno.EPERM] = ("operation not permitted", CAUSES[errno.EACCES][1])


def save_error(error: OSError, input_name: str, what: str, folder, leftover=()) -> SaveError:
    """``input_name: could not write WHAT into FOLDER: CAUSE; ADVICE. LEFTOVERS``."""
    cause, advice = CAUSES.get(error.errno, (error.strerror or str(error), "choose another name or output folder"))
    left = [str(p) for p in leftover if os.path.lexists(p)]
    note = (f" A partial copy could not be removed: {', '.join(left)} (not complete; delete it)." if left
            else " Nothing partial was left behind.")
    failure = SaveError(f"{input_name}: could not write {what} into {str(folder)!r}: {cause}; {advice}.{note}")
    failure.errno = error.errno  # kept for callers; the message is the text alone (no "[Errno N]" in front)
    return failure


def temporary_name(folder: Path, name: str) -> Path:
    """A hidden name beside ``folder/name`` that no other process picks: ``.NAME.<random>.partial``."""
    token = secrets.token_hex(6)
    room = MAX_NAME_BYTES - byte_length(f"..{token}{PARTIAL}")
    stem = os.fsencode(name)[:room].decode("utf-8", "ignore")
    return folder / f".{stem}.{token}{PARTIAL}"


def fsync_path(path: Path) -> None:
    """Flush a file's bytes, or a folder's entries, to the disk (a folder cannot be opened on Windows: skipped)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except (IsADirectoryError, PermissionError):
        return
    try:
        os.fsync(fd)
    except OSError as e:
        if e.errno not in (errno.EINVAL, errno.EBADF):  # some file systems cannot sync a folder
            raise
    finally:
        os.close(fd)


def write_bytes(path: Path, write) -> Path:
    """Create ``path`` (must not exist), let ``write(file)`` fill it, flush it to disk; removed again on failure."""
    try:
        with open(path, "xb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
    except OSError as e:
        full = e.errno is None and disk_full(path.parent)  # numpy's tofile: "N requested and M written", no errno
        remove(path)
        if full:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path)) from e
        raise
    except BaseException:
        remove(path)
        raise
    return path


def disk_full(folder: Path) -> bool:
    """Less free space than one file system block: what a short write with no error number means."""
    try:
        stat = os.statvfs(folder)
    except (OSError, AttributeError):  # AttributeError: no statvfs on Windows
        return False
    return stat.f_bavail * stat.f_frsize < max(stat.f_bsize, 4096)


def publish_file(temp: Path, final: Path) -> None:
    """Give the complete file ``temp`` the name ``final`` unless that name exists (``FileExistsError``)."""
    try:
        os.link(temp, final)
    except FileExistsError:
        raise
    except OSError as e:
        if e.errno not in NO_HARD_LINKS:
            raise
        if os.path.lexists(final):  # no hard links here: check, then rename (Windows' rename never replaces)
            raise FileExistsError(errno.EEXIST, "exists", str(final)) from None
        os.rename(temp, final)
        return
    remove(temp)


def replace_file(path: Path, write) -> Path:
    """Write ``path`` anew (a training state, a regenerated file): ``write(file)`` fills a temporary name beside it,
    which then replaces ``path`` in one rename. A kill or a full disk mid-write leaves the earlier file as it was."""
    temp = write_bytes(temporary_name(path.parent, path.name), write)
    os.replace(temp, path)
    return path


def replace_folder(path: Path, build) -> Path:
    """Build ``path`` anew (a regenerated model folder): ``build(folder)`` fills a temporary folder beside it, which
    then takes ``path``'s place. A kill or an error mid-build leaves the earlier folder as it was (and the hidden
    temporary, after a kill); a kill between the two renames leaves the earlier folder under a hidden
    ``.NAME.<random>.partial`` name, never a half-built one under ``path``."""
    temp = temporary_name(path.parent, path.name)
    temp.mkdir()
    try:
        build(temp)
    except BaseException:
        remove(temp)
        raise
    old = temporary_name(path.parent, path.name)
    if path.exists():
        os.rename(path, old)
    os.rename(temp, path)
    fsync_path(path.parent)
    remove(old)
    return path


def publish_folder(temp: Path, final: Path) -> None:
    """Rename the complete folder ``temp`` to ``final`` unless ``final`` exists and is not an empty folder
    (``FileExistsError``); then flush the parent's entries."""
    if final.is_symlink():
        raise FileExistsError(errno.EEXIST, "a link is in the way", str(final))
    try:
        os.rename(temp, final)
    except OSError as e:
        if e.errno in TAKEN or isinstance(e, FileExistsError):
            raise FileExistsError(errno.EEXIST, "taken", str(final)) from None
        raise
    fsync_path(final.parent)


def remove(path: Path) -> None:
    """Delete a temporary file or folder of ours, quietly (what cannot be removed is reported by the caller)."""
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink()
    except OSError:
        pass


def deterministic_safetensors(tensors: dict, metadata: dict) -> bytes:
    """A safetensors file's bytes with its JSON header's keys sorted: safetensors writes the metadata in hash order,
    which differs between processes, so the same tensors would not always give the same bytes."""
    import json
    import struct

    from safetensors.torch import save

    raw = save(tensors, metadata=metadata)
    (length,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + length])
    text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode("utf-8")
    text += b" " * (-(8 + len(text)) % 8)  # the data stays 8-byte aligned, as safetensors pads its header
    return struct.pack("<Q", len(text)) + text + raw[8 + length:]
