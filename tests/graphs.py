"""Small API-format graphs the node tests queue (``{id: {"class_type", "inputs"}}``), the pictures they load, and the
``--set`` overrides that point the shipped workflows at the tiny test models."""

import numpy as np
from PIL import Image

from conftest import FIXTURES

PERSAM = FIXTURES / "persam" / "data"
# scripts/queue_workflow.py --set values: the shipped workflows on the tiny models of tests/fixtures
TINY = [
    "DiceptionLoad.base_model=tiny_sd3", "DiceptionLoad.checkpoint=diception_tiny.safetensors", "DiceptionLoad.dtype=fp32",
    "DiceptionLoad.clip_l=auto", "DiceptionLoad.clip_g=auto", "DiceptionLoad.t5xxl=auto",
    "DiceptionPerceiveTask.resolution=64", "DiceptionPerceiveTask.steps=2", "PersamSamLoader.checkpoint=tiny_sam.pth",
    "PersamReference.iterations=20", "DiceptionTrainAdapter.steps=2", "DiceptionTrainAdapter.rank=4",
    "DiceptionTrainAdapter.resolution=64",
]


def load_diception(checkpoint="diception_tiny.pth", dtype="fp32"):
    return {"class_type": "DiceptionLoad", "inputs": {"base_model": "tiny_sd3", "checkpoint": checkpoint, "dtype": dtype}}


def perceive(image_link, task="depth", points="[]", category="none", steps=1, guidance=1.0, seed=0, resolution=64, **optional):
    return {
        "class_type": "DiceptionPerceiveTask",
        "inputs": {
            "model": ["model", 0], "image": image_link, "task": task, "category": category, "points": points,
            "steps": steps, "guidance": guidance, "seed": seed, "resolution": resolution, **optional,
        },
    }


def diception_graph(image_name, batch=1, prefix="dice", **perceive_kw):
    """LoadImage → (RepeatImageBatch) → Load DICEPTION → Perceive Task → SaveImage."""
    graph = {
        "load": {"class_type": "LoadImage", "inputs": {"image": image_name}},
        "model": load_diception(),
        "perceive": perceive(["batch", 0] if batch > 1 else ["load", 0], **perceive_kw),
        "save": {"class_type": "SaveImage", "inputs": {"images": ["perceive", 0], "filename_prefix": prefix}},
    }
    if batch > 1:
        graph["batch"] = {"class_type": "RepeatImageBatch", "inputs": {"image": ["load", 0], "amount": batch}}
    return graph


def reference_png(comfy, name="persam_ref.png", empty=False):
    """The fixture reference as LoadImage reads masks: RGBA with alpha 0 on the subject (mask = 1 − alpha)."""
    rgb = np.asarray(Image.open(PERSAM / "ref.png").convert("RGB"))
    subject = np.asarray(Image.open(PERSAM / "ref_mask.png").convert("RGB"))[..., 0] > 0
    alpha = np.where(subject & (not empty), 0, 255).astype(np.uint8)
    Image.fromarray(np.dstack([rgb, alpha]), "RGBA").save(comfy.dirs["input"] / name)
    Image.open(PERSAM / "test1.png").convert("RGB").save(comfy.dirs["input"] / "persam_test1.png")
    return name


def persam_graph(ref_name, fine_tune=False, batch=4, sam="tiny_sam.pth"):
    return {
        "ref_image": {"class_type": "LoadImage", "inputs": {"image": ref_name}},
        "test_image": {"class_type": "LoadImage", "inputs": {"image": "persam_test1.png"}},
        "batch": {"class_type": "RepeatImageBatch", "inputs": {"image": ["test_image", 0], "amount": batch}},
        "sam": {"class_type": "PersamSamLoader", "inputs": {"checkpoint": sam}},
        "reference": {"class_type": "PersamReference", "inputs": {
            "sam": ["sam", 0], "image": ["ref_image", 0], "mask": ["ref_image", 1], "fine_tune": fine_tune,
            "box": "", "iterations": 50}},
        "segment": {"class_type": "PersamSegment", "inputs": {"reference": ["reference", 0], "images": ["batch", 0]}},
        "mask_image": {"class_type": "MaskToImage", "inputs": {"mask": ["segment", 0]}},
        "save_masks": {"class_type": "SaveImage", "inputs": {"images": ["mask_image", 0], "filename_prefix": "persam_mask"}},
        "save_preview": {"class_type": "SaveImage", "inputs": {"images": ["segment", 2], "filename_prefix": "persam_preview"}},
    }
