"""Every input and every output of the pack's nodes explains itself in the graph editor (issue 11, item 8).

Input tooltips travel in each input's options in /object_info on every ComfyUI build; output tooltips
(``OUTPUT_TOOLTIPS``) are served as ``output_tooltips`` by current ComfyUI (v0.8.0+) only.
"""

import ast
from pathlib import Path

import pytest
from comfy_server import pack_nodes

ROOT = Path(__file__).resolve().parent.parent


def test_every_input_of_every_pack_node_has_a_tooltip(comfy):
    info = comfy.object_info()
    missing = []
    for name in pack_nodes():
        for section in ("required", "optional"):
            for input_name, spec in info[name]["input"].get(section, {}).items():
                options = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
                if not str(options.get("tooltip", "")).strip():
                    missing.append(f"{name}.{input_name}")
    assert not missing, f"inputs without a tooltip: {missing}"


def declared_output_tooltips() -> dict:
    """``{class name: (number of RETURN_TYPES, OUTPUT_TOOLTIPS or None)}`` read from the node sources."""
    found = {}
    for path in (ROOT / "nodes").glob("*_nodes.py"):
        for node in ast.parse(path.read_text()).body:
            if not isinstance(node, ast.ClassDef):
                continue
            attrs = {t.id: s.value for s in node.body if isinstance(s, ast.Assign) for t in s.targets if isinstance(t, ast.Name)}
            if "RETURN_TYPES" in attrs:
                tips = attrs.get("OUTPUT_TOOLTIPS")
                found[node.name] = (len(attrs["RETURN_TYPES"].elts), None if tips is None else ast.literal_eval(tips))
    return found


def test_every_output_declares_a_tooltip():
    for cls, (count, tips) in declared_output_tooltips().items():
        assert tips is not None or count == 0, f"{cls} has outputs but no OUTPUT_TOOLTIPS"
        if count:
            assert len(tips) == count and all(t.strip() for t in tips), f"{cls}: one non-empty tooltip per output"


def test_output_tooltips_reach_the_graph_editor(comfy):
    info = comfy.object_info()
    sample = info[next(iter(pack_nodes()))]
    if "output_tooltips" not in sample:
        pytest.skip("this ComfyUI build (2024-03) does not serve OUTPUT_TOOLTIPS in /object_info; checked on v0.8.0+")
    for name in pack_nodes():
        node = info[name]
        assert len(node.get("output_tooltips", [])) == len(node["output"]), name
        assert all(t.strip() for t in node.get("output_tooltips", [])), name
