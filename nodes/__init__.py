"""ComfyUI adapters: thin node classes that call the engine in ``models/``."""

from . import adapter_nodes, decoder_nodes, diception_nodes, dreambooth_nodes, model_folders, persam_nodes, validation

model_folders.register()

_MODULES = (diception_nodes, decoder_nodes, persam_nodes, dreambooth_nodes, adapter_nodes)
NODE_CLASS_MAPPINGS = {k: v for m in _MODULES for k, v in m.NODE_CLASS_MAPPINGS.items()}
NODE_DISPLAY_NAME_MAPPINGS = {k: v for m in _MODULES for k, v in m.NODE_DISPLAY_NAME_MAPPINGS.items()}
for _key, _node in NODE_CLASS_MAPPINGS.items():
    validation.guard(_node, NODE_DISPLAY_NAME_MAPPINGS.get(_key, _key))  # every input checked against INPUT_TYPES
