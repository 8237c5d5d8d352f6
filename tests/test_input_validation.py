"""The validation layer of nodes/validation.py on its own (it needs no ComfyUI): every declared input checked."""

import importlib.util
import sys

import pytest
import torch
from conftest import ROOT

# nodes/validation.py imports the engine's models/inputs.py relatively: its parent packages are registered empty
# (their __init__ would import ComfyUI), so only validation.py and models/ run.
for name, folder in (("pack_validation", ROOT), ("pack_validation.nodes", ROOT / "nodes")):
    sys.modules.setdefault(name, importlib.util.module_from_spec(
        importlib.util.spec_from_file_location(name, folder / "__init__.py", submodule_search_locations=[str(folder)])))
spec = importlib.util.spec_from_file_location("pack_validation.nodes.validation", ROOT / "nodes" / "validation.py")
validation = importlib.util.module_from_spec(spec)
spec.loader.exec_module(validation)


class Node:
    FUNCTION = "run"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {"image": ("IMAGE",), "steps": ("INT", {"default": 1, "min": 1, "max": 10}), "flag": ("BOOLEAN", {"default": True})},
            "optional": {
                "mask": ("MASK",), "scale": ("FLOAT", {"min": 0.0, "max": 2.0}), "mode": (["a", "b"],),
                "combo": ("COMBO", {"options": ["x", "y"]}), "text": ("STRING", {}), "model": ("SOME_MODEL",),
            },
        }

    def run(self, image, steps, flag, **optional):
        return ("ran",)


validation.guard(Node, "Test Node")
GOOD = {"image": torch.zeros(1, 4, 4, 3), "steps": 3, "flag": False}

BAD = {
    "steps bool": ({"steps": True}, "steps: expected an integer in [1, 10], got True (bool)"),
    "steps float": ({"steps": 2.0}, "steps: expected an integer in [1, 10]"),
    "steps above": ({"steps": 11}, "steps: expected an integer in [1, 10], got 11"),
    "steps text": ({"steps": "3"}, "steps: expected an integer in [1, 10], got '3' (str)"),
    "steps object": ({"steps": {"a": 1}}, "steps: expected an integer in [1, 10]"),
    "flag int": ({"flag": 1}, "flag: expected true or false, got 1 (int)"),
    "flag text": ({"flag": "false"}, "flag: expected true or false"),
    "scale nan": ({"scale": float("nan")}, "scale: expected a finite number in [0.0, 2.0], got nan"),
    "scale -inf": ({"scale": float("-inf")}, "scale: expected a finite number"),
    "scale below": ({"scale": -0.5}, "scale: expected a number in [0.0, 2.0], got -0.5"),
    "scale bool": ({"scale": False}, "scale: expected a number"),
    "scale text": ({"scale": "half"}, "scale: expected a number in [0.0, 2.0], got 'half' (str)"),
    "scale inf": ({"scale": float("inf")}, "scale: expected a finite number in [0.0, 2.0], got inf"),
    "mode": ({"mode": "c"}, "mode: expected one of ['a', 'b'], got 'c'"),
    "mode None": ({"mode": None}, "mode: expected one of ['a', 'b']"),
    "mode int": ({"mode": 3}, "mode: expected one of ['a', 'b'], got 3"),
    "COMBO": ({"combo": "z"}, "combo: expected one of ['x', 'y']"),
    "text int": ({"text": 5}, "text: expected a string, got 5 (int)"),
    "optional widget None": ({"scale": None}, "scale: expected a finite number in [0.0, 2.0], got nothing (None)"),
    "image None": ({"image": None}, "image: expected a IMAGE"),
    "image inf": ({"image": torch.full((1, 4, 4, 3), float("inf"))}, "image: the IMAGE has 48 non-finite value(s)"),
    "image one NaN": ({"image": torch.zeros(1, 4, 4, 3).index_fill_(1, torch.tensor([2]), float("nan"))}, "non-finite"),
    "image 3-D": ({"image": torch.zeros(4, 4, 3)}, "image: expected a non-empty IMAGE (batch, height, width, channels), got shape (4, 4, 3)"),
    "image empty": ({"image": torch.zeros(0, 4, 4, 3)}, "image: expected a non-empty IMAGE"),
    "image not a tensor": ({"image": [[0.0]]}, "image: expected an IMAGE tensor"),
    "mask NaN": ({"mask": torch.full((1, 4, 4), float("nan"))}, "mask: the MASK has 16 non-finite"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_every_declared_input_is_checked(case):
    change, message = BAD[case]
    with pytest.raises(ValueError) as e:
        Node().run(**{**GOOD, **change})
    assert str(e.value).startswith("Test Node: ") and message in str(e.value), str(e.value)


def test_good_values_and_unconnected_optional_links_pass():
    assert Node().run(**GOOD, mask=None, model=None, scale=1, mode="b", combo="y", text="") == ("ran",)
    validation.guard(Node, "again")  # idempotent: one wrapper only
    with pytest.raises(ValueError, match="^Test Node: steps"):
        Node().run(**{**GOOD, "steps": 0})
