"""The pack's model folders in ComfyUI: ``models/diception`` and ``models/sams``."""

import os

import folder_paths

WEIGHT_EXTENSIONS = {".safetensors", ".pth", ".pt", ".bin", ".ckpt"}
FOLDERS = ("diception", "sams")
PROMPT_CACHE = "prompt_cache"


def register() -> None:
    for name in FOLDERS:
        default = os.path.join(folder_paths.models_dir, name)
        paths, extensions = folder_paths.folder_names_and_paths.get(name, ([], set()))
        paths = list(paths) + ([default] if default not in paths else [])
        folder_paths.folder_names_and_paths[name] = (paths, set(extensions) | WEIGHT_EXTENSIONS)


def weight_files(name: str) -> list:
    """Weight files under a model folder, without the prompt cache and the parts of diffusers base folders."""
    skip = tuple(folder + "/" for folder in [PROMPT_CACHE] + diffusers_folders(name))
    return [f for f in folder_paths.get_filename_list(name) if not f.replace("\\", "/").startswith(skip)]


def diffusers_folders(name: str) -> list:
    """Sub-folders (up to two levels) that hold an SD3 diffusers layout (``model_index.json``)."""
    found = set()
    for root in folder_paths.get_folder_paths(name):
        if not os.path.isdir(root):
            continue
        for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
            depth = os.path.relpath(dirpath, root).count(os.sep)
            if "model_index.json" in filenames and dirpath != root:
                found.add(os.path.relpath(dirpath, root).replace(os.sep, "/"))
                dirnames[:] = []
            elif depth >= 1:
                dirnames[:] = []
    return sorted(found)


SINGLE_FILE_PREFIX = "checkpoints/"


def sd3_single_files() -> list:
    """SD3 single-file checkpoints in ComfyUI's ``models/checkpoints`` (names containing "sd3")."""
    return [SINGLE_FILE_PREFIX + f for f in folder_paths.get_filename_list("checkpoints") if "sd3" in f.lower()]


def find_base(choice: str) -> str:
    """A base-model choice of Load DICEPTION → its path (a diffusers folder or a single file)."""
    if choice.startswith(SINGLE_FILE_PREFIX):
        return find("checkpoints", choice[len(SINGLE_FILE_PREFIX):])
    return find("diception", choice)


def find(name: str, relative: str) -> str:
    """The full path of ``relative`` in the model folder ``name``; a clear error lists the paths searched."""
    searched = [os.path.join(root, relative) for root in folder_paths.get_folder_paths(name)]
    for path in searched:
        if os.path.exists(path):
            return path
    raise FileNotFoundError(f"{relative!r} not found in the {name} model folders; searched: {searched}")


def prompt_cache_root() -> str:
    return os.path.join(folder_paths.get_folder_paths("diception")[0], PROMPT_CACHE)
