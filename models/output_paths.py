"""Where the pack writes: every user-given output name is resolved here, under the output folder, or refused.

Used by Save DreamBooth Dataset (``folder``) and Save Depth (``filename_prefix``). A name is refused, with an error
naming the input and what is expected, when it is empty or names the output folder itself ("" or "."), is absolute,
climbs out with "..", leads out through a symbolic link, holds a NUL byte, has a component longer than the
filesystem allows (255 bytes) or makes a path longer than the system allows. Nothing existing is overwritten: a
taken folder gets a numbered sibling (``name_001``), files get the next free number; the number is claimed when the
complete file or folder is published (models.publish), so two processes never take the same one.
"""

import errno
import os
from pathlib import Path, PurePosixPath, PureWindowsPath

MAX_NAME_BYTES = 255  # one path component (ext4, xfs, btrfs, APFS, NTFS in UTF-16 units)
MAX_PATH_BYTES = 4095  # PATH_MAX (4096) less the terminating NUL


def byte_length(text: str) -> int:
    return len(os.fsencode(text))


def split(name: str) -> list:
    """The components of a name as the system reads it ("\\" separates on Windows only)."""
    return (name.replace("\\", "/") if os.sep == "\\" else name).split("/")


def check_name(name, input_name: str, example: str, root_name: str = "output folder") -> tuple:
    """The components of a relative output name, or ValueError naming ``input_name`` and what is expected
    (``root_name``: the folder it is relative to, for the message)."""
    expected = f"expected a name relative to the {root_name}, such as {example!r}"
    if not isinstance(name, str):
        raise ValueError(f"{input_name}: {expected}, got {type(name).__name__} {name!r}")
    if "\x00" in name:
        raise ValueError(f"{input_name}: contains a NUL byte (\\x00); {expected}")
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"{input_name}: {name!r} is not valid UTF-8 text; {expected}") from None
    if PurePosixPath(name).is_absolute() or PureWindowsPath(name).anchor:
        raise ValueError(f"{input_name}: {name!r} is an absolute path; {expected}")
    parts = [p for p in split(name) if p not in ("", ".")]
    if ".." in parts:
        raise ValueError(f"{input_name}: {name!r} climbs out with '..'; {expected}")
    if not parts:
        raise ValueError(f"{input_name}: {name!r} names the output folder itself; {expected}")
    if any(not part.strip() for part in parts):
        raise ValueError(f"{input_name}: {name!r} has a blank folder or file name; {expected}")
    for part in parts:
        if byte_length(part) > MAX_NAME_BYTES:
            raise ValueError(
                f"{input_name}: the component {part[:40]!r}… is {byte_length(part)} bytes; the filesystem allows "
                f"{MAX_NAME_BYTES} bytes per folder or file name: give a shorter name")
    return tuple(parts)


def contained(root: Path, path: Path, name: str, input_name: str, example: str, root_name: str = "output folder") -> Path:
    """``path`` with symbolic links resolved, refused unless it lies inside ``root`` (already resolved)."""
    if byte_length(str(path)) > MAX_PATH_BYTES:
        raise ValueError(
            f"{input_name}: the path would be {byte_length(str(path))} bytes, more than the {MAX_PATH_BYTES} the "
            f"system allows; give a shorter name than {name[:40]!r}…")
    real = Path(os.path.realpath(path))
    if real != root and root not in real.parents:
        raise ValueError(
            f"{input_name}: {name!r} leads outside the {root_name} {root} (through a symbolic link); expected a "
            f"name relative to the {root_name}, such as {example!r}")
    for parent in reversed(real.parents):
        if parent != root and root in parent.parents and parent.exists() and not parent.is_dir():
            raise ValueError(f"{input_name}: {parent.relative_to(root).as_posix()!r} in the {root_name} is a file, "
                             f"not a folder; choose another name")
    return real


def output_target(root, name, input_name: str = "folder", example: str = "dreambooth/subject") -> Path:
    """The checked path ``root/name`` of a folder to be written (its parent folders are created, not the folder)."""
    root = Path(os.path.realpath(root))
    target = contained(root, root.joinpath(*check_name(name, input_name, example)), name, input_name, example)
    make_folder(target.parent, input_name)
    return target


def numbered(target: Path, input_name: str = "folder"):
    """``target``, then ``target_001``, ``target_002``… that are free (absent, or an empty folder): the names a
    folder may take. Which one it gets is settled when it is renamed into place (models.publish)."""
    n, candidate = 0, target
    while True:
        if not os.path.lexists(candidate) or (candidate.is_dir() and not candidate.is_symlink()
                                              and not any(candidate.iterdir())):
            yield candidate
        n += 1
        candidate = target.with_name(f"{target.name}_{n:03}")
        if byte_length(candidate.name) > MAX_NAME_BYTES:
            raise ValueError(f"{input_name}: {target.name[:40]!r}… is taken and a numbered name "
                             f"({byte_length(candidate.name)} bytes) exceeds {MAX_NAME_BYTES} bytes: give a shorter name")


def output_prefix(root, prefix, suffix_bytes: int, input_name: str = "filename_prefix",
                  example: str = "depth/diception") -> tuple:
    """``(folder, file name prefix)`` for numbered files ``prefix_00001.ext``: the folder is created under ``root``;
    ``suffix_bytes`` is the length the numbering and extension add to the last component."""
    root = Path(os.path.realpath(root))
    parts = check_name(prefix, input_name, example)
    if split(prefix)[-1] in ("", "."):
        raise ValueError(f"{input_name}: {prefix!r} ends in a folder, not a file name prefix; {example!r} writes "
                         f"{example}_00001.png")
    if byte_length(parts[-1]) + suffix_bytes > MAX_NAME_BYTES:
        raise ValueError(
            f"{input_name}: the file name {parts[-1][:40]!r}… with its number and extension would be "
            f"{byte_length(parts[-1]) + suffix_bytes} bytes; the filesystem allows {MAX_NAME_BYTES}: give a shorter prefix")
    folder = contained(root, root.joinpath(*parts[:-1]), prefix, input_name, example)
    contained(root, folder / (parts[-1] + "x" * suffix_bytes), prefix, input_name, example)
    make_folder(folder, input_name)
    return folder, parts[-1]


def make_folder(folder: Path, input_name: str):
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        if e.errno in (errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOSPC, errno.EDQUOT):
            advice = ("free space on that disk, or choose another output folder (ComfyUI's --output-directory)"
                      if e.errno in (errno.ENOSPC, errno.EDQUOT) else
                      "choose another output folder (ComfyUI's --output-directory) on a disk ComfyUI may write to")
        else:
            advice = "choose another name"
        raise ValueError(f"{input_name}: cannot create the folder {str(folder)!r}: {e.strerror}; {advice}") from e
