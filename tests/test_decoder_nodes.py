"""Decoder nodes through the real ComfyUI server, on loaded images (no DICEPTION model needed)."""

import io

import numpy as np
import pytest
from comfy_server import ComfyError, error_message
from PIL import Image


@pytest.fixture()
def answer(comfy):
    """A synthetic 'answer' image in the input folder: a horizontal ramp (depth) with two painted squares."""
    ramp = np.tile(np.linspace(0, 255, 96, dtype=np.float32), (64, 1))
    rgb = np.repeat(ramp[..., None], 3, axis=2).astype(np.uint8)
    rgb[8:30, 8:30] = (230, 40, 40)
    rgb[36:60, 50:90] = (40, 200, 90)
    Image.fromarray(rgb).save(comfy.dirs["input"] / "answer.png")
    return "answer.png"


def view(comfy, entry, node, index=0):
    return np.asarray(Image.open(io.BytesIO(comfy.view(entry["outputs"][node]["images"][index]))))


def test_depth_decoder_feeds_stock_image_nodes_and_saves(comfy, answer):
    graph = {
        "load": {"class_type": "LoadImage", "inputs": {"image": answer}},
        "depth": {"class_type": "DiceptionRGBToDepth", "inputs": {"image": ["load", 0], "output": "disparity (near = bright)",
                  "normalization": "minmax", "invert": False, "colormap": "turbo"}},
        "scale": {"class_type": "ImageScale", "inputs": {"image": ["depth", 0], "upscale_method": "bilinear", "width": 48, "height": 32, "crop": "disabled"}},
        "save_depth_image": {"class_type": "SaveImage", "inputs": {"images": ["scale", 0], "filename_prefix": "dec_depth"}},
        "save_preview": {"class_type": "SaveImage", "inputs": {"images": ["depth", 2], "filename_prefix": "dec_preview"}},
        "save_raw": {"class_type": "DiceptionSaveDepth", "inputs": {"depth": ["depth", 1], "filename_prefix": "depth/dec", "format": "png16+npy"}},
    }
    first = comfy.run(graph)
    assert view(comfy, first, "save_depth_image").shape[:2] == (32, 48)
    assert view(comfy, first, "save_preview").shape == (64, 96, 3)
    graph["save_raw"]["inputs"]["format"] = "png16+npy"
    graph["depth"]["inputs"]["colormap"] = "gray"  # a change, so the graph runs again
    comfy.run(graph)
    folder = comfy.dirs["output"] / "depth"
    pngs, npys = sorted(folder.glob("dec_*.png")), sorted(folder.glob("dec_*.npy"))
    assert [p.stem for p in pngs] == ["dec_00001", "dec_00002"] and len(npys) == 2  # numbered, not overwritten
    saved = np.load(npys[0])
    assert saved.shape == (64, 96) and saved.dtype == np.float32
    png = np.asarray(Image.open(pngs[0]))
    assert png.dtype.kind in "iu" and png.max() > 255  # 16-bit values


def test_normal_and_mask_decoders(comfy, answer):
    graph = {
        "load": {"class_type": "LoadImage", "inputs": {"image": answer}},
        "normal": {"class_type": "DiceptionRGBToNormal", "inputs": {"image": ["load", 0], "convention": "DirectX (+Y down)"}},
        "masks": {"class_type": "DiceptionRGBToMasks", "inputs": {"image": ["load", 0], "mode": "instances (entity / semantic colours)",
                  "threshold": 0.5, "tolerance": 12.0, "min_area": 64}},
        "pose": {"class_type": "DiceptionRGBToPose", "inputs": {"image": ["load", 0]}},
        "mask_image": {"class_type": "MaskToImage", "inputs": {"mask": ["masks", 0]}},
        "save_normal": {"class_type": "SaveImage", "inputs": {"images": ["normal", 0], "filename_prefix": "dec_normal"}},
        "save_masks": {"class_type": "SaveImage", "inputs": {"images": ["mask_image", 0], "filename_prefix": "dec_masks"}},
    }
    entry = comfy.run(graph)
    assert view(comfy, entry, "save_normal").shape == (64, 96, 3)
    masks = entry["outputs"]["save_masks"]["images"]
    assert len(masks) >= 2  # at least the two painted squares (the ramp may add regions)


def test_decoders_refuse_bad_maps(comfy, answer):
    graph = {
        "load": {"class_type": "EmptyImage", "inputs": {"width": 32, "height": 32, "batch_size": 1, "color": 0}},
        "depth": {"class_type": "DiceptionRGBToDepth", "inputs": {"image": ["load", 0], "output": "disparity (near = bright)",
                  "normalization": "minmax", "invert": False, "colormap": "gray"}},
        "align": {"class_type": "DiceptionRGBToDepth", "inputs": {"image": ["load", 0], "output": "disparity (near = bright)",
                  "normalization": "minmax", "invert": False, "colormap": "gray", "reference_depth": ["zero", 0]}},
        "zero": {"class_type": "SolidMask", "inputs": {"value": 0.0, "width": 32, "height": 32}},
        "save": {"class_type": "SaveImage", "inputs": {"images": ["align", 0], "filename_prefix": "bad"}},
    }
    with pytest.raises(ComfyError) as e:
        comfy.run(graph)
    assert "at least 2 pixels with known depth" in error_message(e.value.body)
    # an all-black map decodes to zeros (documented), not an error
    graph["save"]["inputs"]["images"] = ["depth", 0]
    entry = comfy.run(graph)
    assert view(comfy, entry, "save").max() == 0
