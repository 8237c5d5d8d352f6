"""ComfyUI adapters: thin node classes that call the engine in ``models/``."""

from . import model_folders
from .diception_nodes import NODE_CLASS_MAPPINGS as _DICEPTION, NODE_DISPLAY_NAME_MAPPINGS as _DICEPTION_NAMES

model_folders.register()

NODE_CLASS_MAPPINGS = {**_DICEPTION}
NODE_DISPLAY_NAME_MAPPINGS = {**_DICEPTION_NAMES}
