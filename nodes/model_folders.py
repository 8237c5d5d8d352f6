"""The pack's model folders in ComfyUI: ``models/diception`` and ``models/sams``."""

import os

import folder_paths

WEIGHT_EXTENSIONS = {".safetensors", ".pth", ".pt", ".bin", ".ckpt"}
FOLDERS = ("diception", "sams")
TEXT_ENCODER_FOLDERS = ("text_encoders", "clip")  # current ComfyUI's name first; older installs: clip
PROMPT_CACHE = "prompt_cache"


def register() -> None:
    # "text_encoders" exists in current ComfyUI (models/text_encoders + models/clip); older builds only know "clip"
    for name in FOLDERS + TEXT_ENCODER_FOLDERS[:1]:
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


def _text_encoder_folder_names() -> list:
    return [n for n in TEXT_ENCODER_FOLDERS if n in folder_paths.folder_names_and_paths]


def text_encoder_files() -> list:
    """Files in ComfyUI's text-encoder folders (``text_encoders``, older ``clip``), each name once."""
    names = [f for n in _text_encoder_folder_names() for f in folder_paths.get_filename_list(n)]
    return sorted(dict.fromkeys(names))


def text_encoder_paths() -> list:
    """Full paths of those files: the candidates a text encoder set to "auto" is picked from."""
    paths = {}
    for n in _text_encoder_folder_names():
        for f in folder_paths.get_filename_list(n):
            path = folder_paths.get_full_path(n, f)
            if path:
                paths[os.path.realpath(path)] = path
    return list(paths.values())


def find_text_encoder(relative: str) -> str:
    searched = [os.path.join(r, relative) for n in _text_encoder_folder_names() for r in folder_paths.get_folder_paths(n)]
    for path in searched:
        if os.path.isfile(path):
            return path
    raise FileNotFoundError(f"text encoder {relative!r} not found in ComfyUI's text-encoder folders; searched: {searched}")


def single_file_configs():
    """The configs an SD3 single file is built with: SD3-medium's shipped ones, or the diffusers-layout folder named
    by ``DICEPTION_SD3_CONFIGS`` (another SD3-architecture variant; the tests use it for their tiny models)."""
    from ..models.diception import SD3_MEDIUM_CONFIGS

    return os.environ.get("DICEPTION_SD3_CONFIGS") or SD3_MEDIUM_CONFIGS


def single_file_tokenizers(comfy_tokenizers: dict) -> dict:
    """Tokenizer folders for single files and separate encoder files: the configs folder's own (``tokenizer``,
    ``tokenizer_3``) when it has them, else ComfyUI's (``comfy_tokenizers``)."""
    configs = single_file_configs()
    own = {"clip": os.path.join(configs, "tokenizer"), "t5": os.path.join(configs, "tokenizer_3")}
    return own if all(os.path.isdir(p) for p in own.values()) else comfy_tokenizers
