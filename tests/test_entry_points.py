"""One engine entry point per operation, an explicit host, the import rules (issue 28).

- The code's shape, read from the source: no attribute assigned from nodes/ onto engine objects; no import cycle;
  no lower layer importing a higher one (models/ < nodes/ < scripts/), no ComfyUI import in models/.
- The same bad inputs give the same messages through the nodes and through the collection labeller's engine path
  (both in-process: the nodes inside the test-engine ComfyUI's own ``comfy`` package, the labeller as its workers
  run it); the hostile-input suites check the nodes through the real server.
- ComfyUI's model management sees one set of weights once, with an adapter attached or not.
- API clients see the pack's exceptions by a path-free type name (one server test).
"""

import argparse
import ast
import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from comfy_server import ComfyError, error_message, save_fixture_image
from conftest import FIXTURES
from graphs import diception_graph
from PIL import Image

from scripts.get_test_comfyui import DEFAULT_DEST

ROOT = Path(__file__).resolve().parent.parent
DICE = FIXTURES / "diception" / "model"
PERSAM = FIXTURES / "persam"
LAYERS = {"models": 0, "nodes": 2, "scripts": 3}  # models/<package>/ sit at 1, above models/<module>.py
COMFYUI_MODULES = {"comfy", "comfy_extras", "folder_paths", "server", "execution", "nodes", "latent_preview"}


def python_files(*folders):
    return sorted(p for folder in folders for p in (ROOT / folder).rglob("*.py"))


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path):
    """(imported module, line) for every import of ``path``, relative ones resolved; ``a.b.name`` when a name is
    imported from a package (resolved to a module by the caller)."""
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            yield from ((alias.name, node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([node.module] if node.module else []))
            yield from ((f"{base}.{alias.name}", node.lineno) for alias in node.names)


def own_module(name: str, modules: set):
    """The pack's module ``name`` refers to (the longest prefix that is one), or None for an outside module."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        if ".".join(parts[:end]) in modules:
            return ".".join(parts[:end])
    return None


def layer(module: str) -> int:
    top, _, rest = module.partition(".")
    if top == "models" and "." in rest:
        return 1
    if top == "models" and rest and (ROOT / "models" / rest).is_dir():
        return 1
    return LAYERS[top]


def flat(target):
    """The names / attributes / items an assignment target binds (``a, b.c = ...`` → a, b.c)."""
    if isinstance(target, (ast.Tuple, ast.List)):
        return [t for element in target.elts for t in flat(element)]
    return flat(target.value) if isinstance(target, ast.Starred) else [target]


def test_nodes_assign_no_attribute_onto_engine_objects():
    """A node talks to the engine through arguments (the host object, inputs); it never patches the engine's objects
    (the old ``pipeline.prepare = self.prepare``). Attributes are set only on the node's own objects (``self``),
    and validation.guard marks its own wrapper function."""
    allowed = {("validation.py", "checked._checks_inputs"), ("validation.py", "setattr(node_class, name, checked)")}
    found = []
    for path in python_files("nodes"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, (ast.AugAssign, ast.AnnAssign)) else []
            stores = [t for target in targets for t in flat(target) if isinstance(t, ast.Attribute)]
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("setattr", "delattr"):
                stores.append(node)
            for store in stores:
                text = ast.unparse(store)
                if not text.startswith("self.") and (path.name, text) not in allowed:
                    found.append(f"nodes/{path.name}:{node.lineno}: {text}")
    assert not found, found


def test_imports_keep_their_layers_and_form_no_cycle():
    files = python_files("models", "nodes", "scripts")
    modules = {module_name(p) for p in files}
    graph, wrong = {}, []
    for path in files:
        source = module_name(path)
        for name, line in imports(path):
            where = f"{path.relative_to(ROOT)}:{line} imports {name}"
            if source.startswith("models") and name.split(".")[0] in COMFYUI_MODULES:
                wrong.append(f"{where} (ComfyUI, in the engine)")
            target = own_module(name, modules)
            if target is None or target == source:
                continue
            if layer(target) > layer(source):
                wrong.append(f"{where} (a higher layer)")
            graph.setdefault(source, set()).add(target)
    assert not wrong, wrong
    # a cycle: a module reachable from itself (package __init__ → its own submodules is a package's nature: skipped)
    def reach(start):
        seen, todo = set(), [t for t in graph.get(start, ()) if not t.startswith(start + ".")]
        while todo:
            module = todo.pop()
            if module not in seen:
                seen.add(module)
                todo += [t for t in graph.get(module, ()) if not t.startswith(module + ".")]
        return seen

    cycles = [m for m in graph if m in reach(m)]
    assert not cycles, cycles


# --- the nodes in-process, inside the test-engine ComfyUI's own comfy package ---------------------------------------


@pytest.fixture(scope="module")
def pack():
    """The pack imported as ComfyUI imports a custom node (a package named after its folder), on the test engine's
    ``comfy`` (CPU); removed from ``sys.modules`` afterwards."""
    if not (DEFAULT_DEST / "comfy").is_dir():
        pytest.fail(f"no test-engine ComfyUI at {DEFAULT_DEST}: run `python scripts/get_test_comfyui.py`")
    before = set(sys.modules)
    sys.path.insert(0, str(DEFAULT_DEST))
    import comfy.cli_args

    comfy.cli_args.args.cpu = True
    spec = importlib.util.spec_from_file_location("pack_under_test", ROOT / "__init__.py", submodule_search_locations=[str(ROOT)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    yield lambda name: importlib.import_module(f"pack_under_test.{name}")
    sys.path.remove(str(DEFAULT_DEST))
    for name in set(sys.modules) - before:
        if name == "pack_under_test" or name.startswith("pack_under_test."):
            del sys.modules[name]


def node_error(call) -> str:
    with pytest.raises(ValueError) as e:
        call()
    return str(e.value)


def labeller(tmp_path, **settings):
    from scripts.collection.engine_labeler import EngineLabeler, digest_of

    base = {"model": "diception", "device": "cpu", "dtype": "fp32", "base": str(DICE / "tiny_sd3"),
            "checkpoint": str(DICE / "diception_tiny.safetensors"), "task": "depth", "category": "", "steps": 1,
            "guidance": 1.0, "seed": 0, "resolution": 64, "prompt_cache": str(tmp_path / "cache")}
    chosen = {**base, **settings}
    return EngineLabeler({**chosen, "digest": digest_of(chosen, [])}, tmp_path / "out")


def test_diception_bad_inputs_give_the_same_messages_through_nodes_and_labeller(pack, tmp_path):
    nodes = pack("nodes.diception_nodes")
    model = nodes.DiceptionModel(pack("models.diception").load_pipeline(
        DICE / "tiny_sd3", DICE / "diception_tiny.safetensors", torch.float32, tmp_path / "node_cache",
        host=pack("nodes.comfy_host").ComfyHost()))
    image = torch.rand(1, 40, 48, 3, generator=torch.Generator().manual_seed(0))
    Image.fromarray((image[0].numpy() * 255).astype(np.uint8)).save(tmp_path / "photo.png")
    node_kw = dict(model=model, image=image, task="depth", category="none", points="[]", steps=1, guidance=1.0, seed=0,
                   resolution=64)
    worker = labeller(tmp_path)  # one model, settings changed per case as a new run's settings would
    cases = {
        "semantic without a category": ({"task": "semantic segmentation"}, {"task": "semantic segmentation", "category": ""}),
        "resolution off the grid": ({"resolution": 72}, {"resolution": 72}),
        "resolution too large": ({"resolution": 2048}, {"resolution": 2048}),
    }
    for name, (node_inputs, labeller_settings) in cases.items():
        node_message = node_error(lambda: nodes.PerceiveTask().perceive(**{**node_kw, **node_inputs}))
        worker.settings = {**worker.settings, **labeller_settings}
        answer = worker({"job": json.dumps({"id": name, "image": str(tmp_path / "photo.png")})})
        assert answer["status"] == "failed" and answer["error"] == f"InputError: {node_message}", (name, answer, node_message)


def test_persam_bad_references_give_the_same_messages_through_nodes_and_labeller(pack, tmp_path):
    nodes = pack("nodes.persam_nodes")
    from scripts.collection.engine_labeler import engine_settings, load_image, load_mask

    sam = nodes.SamModel(pack("models.persam").load_sam(PERSAM / "tiny_sam.pth"))
    reference = Image.open(PERSAM / "data" / "ref.png").convert("RGB")
    reference.save(tmp_path / "ref.png")
    width, height = reference.size
    Image.new("L", (width, height)).save(tmp_path / "empty_mask.png")
    Image.new("L", (width // 2, height)).save(tmp_path / "small_mask.png")
    for mask_file in ("empty_mask.png", "small_mask.png"):
        node_message = node_error(lambda: nodes.PersamReferenceNode().reference(
            image=[load_image(tmp_path / "ref.png")], fine_tune=[False], sam=[sam],
            mask=[load_mask(tmp_path / mask_file)[None]]))
        args = argparse.Namespace(model="persam", dtype="auto", sam=str(PERSAM / "tiny_sam.pth"), reference=str(tmp_path / "ref.png"),
                                  reference_mask=str(tmp_path / mask_file), fine_tune=False, max_instances=1, overlap_stop=0.5)
        assert node_error(lambda: engine_settings(args, tmp_path, "cpu")) == node_message, mask_file


def test_one_set_of_model_patchers_with_an_adapter_attached(pack, tmp_path):
    """ComfyUI's loaded-memory figure (``current_loaded_models``) counts the transformer once, with or without an
    adapter: the adapted pipeline shares its base's host, whose patcher is keyed by the base weights."""
    import comfy.model_management as mm

    diception = pack("models.diception")
    adapter = pack("models.diception.adapter")
    pipeline = diception.load_pipeline(DICE / "tiny_sd3", DICE / "diception_tiny.safetensors", torch.float32,
                                       tmp_path / "cache", host=pack("nodes.comfy_host").ComfyHost())
    image = torch.rand(1, 32, 32, 3)

    def loaded_bytes():
        return sum(m.model_memory() for m in mm.current_loaded_models)

    mm.unload_all_models()
    pipeline(image, "depth", steps=1, guidance=1.0, resolution=64)
    alone = loaded_bytes()
    fresh = adapter.TaskAdapter("spots", "[[image2spots]]", 4, 4.0, adapter.DEFAULT_TARGETS, {})
    adapted = pipeline.with_adapters([fresh])
    adapted(image, "spots", steps=1, guidance=1.0, resolution=64)
    with_adapter = loaded_bytes()
    # before issue 28 a pipeline with adapters got a second host, whose patcher wrapped the adapted transformer
    comfy_adapter = pack("nodes.comfy_adapter")
    second = comfy_adapter.managed([adapted.transformer, adapted.point_encoder])  # held: ComfyUI may keep weak references
    comfy_adapter.load([second])
    second_set = loaded_bytes()
    print(f"ComfyUI's loaded-memory figure: {alone} bytes without an adapter, {with_adapter} with one "
          f"({second_set} with a second set of patchers, as before)")
    def size(*parts):
        return sum(t.numel() * t.element_size() for part in parts for t in list(part.parameters()) + list(part.buffers()))

    assert alone == with_adapter == size(pipeline.transformer, pipeline.point_encoder, pipeline.vae)
    assert second_set >= with_adapter + size(pipeline.transformer, pipeline.point_encoder)  # counted twice
    mm.unload_all_models()


# --- the real server ----------------------------------------------------------------------------------------------


def test_api_clients_see_a_path_free_error_type(comfy):
    """ComfyUI reports ``exception_type`` as the class's module + name; the pack's module is named after the server's
    folder, so InputError (and SaveError) carry a stable module: ``comfyui_diception_persam.InputError``."""
    save_fixture_image(comfy, FIXTURES / "diception/images/rect_96x72.png", "rect.png")
    graph = diception_graph("rect.png", prefix="error_type")
    graph["perceive"]["inputs"]["resolution"] = 72  # not a multiple of 16: the engine refuses it
    with pytest.raises(ComfyError) as e:
        comfy.run(graph)
    message = error_message(e.value.body)
    assert message.startswith("comfyui_diception_persam.InputError: resolution: must be a multiple of 16"), message
