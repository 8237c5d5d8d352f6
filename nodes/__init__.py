"""ComfyUI adapters: thin node classes that call the engine in ``models/``."""

from . import diception_nodes, model_folders, persam_nodes

model_folders.register()

NODE_CLASS_MAPPINGS = {**diception_nodes.NODE_CLASS_MAPPINGS, **persam_nodes.NODE_CLASS_MAPPINGS}
NODE_DISPLAY_NAME_MAPPINGS = {**diception_nodes.NODE_DISPLAY_NAME_MAPPINGS, **persam_nodes.NODE_DISPLAY_NAME_MAPPINGS}
