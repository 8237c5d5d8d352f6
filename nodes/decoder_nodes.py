"""ComfyUI nodes that turn DICEPTION's RGB answers into depth, normals, masks and keypoints, and save depth.

All work on any IMAGE (a loaded answer too), batches and any size, without the DICEPTION model.
"""

import json
import os

import torch

import folder_paths

from ..models.decoders import (
    COLORMAPS, CONVENTIONS, EDGE_TOLERANCE, MERGE_TOLERANCE, align_depth, colorize, decode_depth, decode_instances,
    decode_keypoints, decode_mask, decode_normals, encode_normals, normalize, photo_per_answer, to_depth,
)
from ..models.decoders.export import FORMATS, save_depth_maps
from . import comfy_adapter

DEPTH_OUTPUTS = ("disparity (near = bright)", "relative depth (far = bright)")


class RGBToDepth:
    DESCRIPTION = (
        "Decodes a DICEPTION depth answer: the channel mean is disparity (near = bright, unknown scale and shift). "
        "Outputs a 3-channel IMAGE for depth ControlNets, the same values as a MASK-type map for math, a colour preview, "
        "and — with a reference depth — the least-squares scale/shift that makes it metric."
    )
    CATEGORY = "DICEPTION/decoders"
    FUNCTION = "decode"
    RETURN_TYPES = ("IMAGE", "MASK", "IMAGE", "STRING")
    RETURN_NAMES = ("depth_image", "depth", "preview", "alignment")
    OUTPUT_TOOLTIPS = (
        "depth in [0, 1] as a 3-channel image, for depth ControlNets and image nodes",
        "the chosen quantity as a MASK-type map (metric depth when a reference depth is given), for math and Save Depth",
        "a colour preview of the depth",
        "JSON list of the fitted scale/shift per image (empty without a reference depth)",
    )

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "image": ("IMAGE", {"tooltip": "a DICEPTION depth answer (Perceive Task, task depth), or any such RGB image"}),
                "output": (list(DEPTH_OUTPUTS), {"default": DEPTH_OUTPUTS[0], "tooltip": "disparity as trained (near = bright, what depth ControlNets expect), or relative depth 1/(disparity + 1e-3) (far = bright)"}),
                "normalization": (["minmax", "percentile", "none"], {"default": "minmax", "tooltip": "percentile: 2–98 %"}),
                "invert": ("BOOLEAN", {"default": False, "tooltip": "flip the shown values (1 - x): near = dark"}),
                "colormap": (list(COLORMAPS), {"default": "Spectral", "tooltip": "colours of the preview output only"}),
            },
            "optional": {
                "reference_depth": ("MASK", {"tooltip": "known metric depth (0 = unknown), sparse or dense; makes the MASK output metric depth"}),
                "align_in": (["disparity", "depth"], {"default": "disparity", "tooltip": "fit scale/shift to 1/depth (disparity models) or to depth"}),
            },
        }

    def decode(self, image, output, normalization, invert, colormap, reference_depth=None, align_in="disparity"):
        """MASK = the chosen quantity (normalised, or metric depth when aligned); IMAGE/preview = it in [0, 1]."""
        disparity = decode_depth(image)
        near_bright = output == DEPTH_OUTPUTS[0]
        alignment = []
        if reference_depth is None:
            values = normalize(disparity if near_bright else to_depth(disparity), normalization)
        else:
            fits = [align_depth(d, reference_depth[min(i, len(reference_depth) - 1)], space=align_in) for i, d in enumerate(comfy_adapter.each(disparity))]
            alignment = [{"scale": scale, "shift": shift, "space": align_in} for _, scale, shift in fits]
            values = torch.stack([depth for depth, _, _ in fits])  # metric depth
        shown = values if reference_depth is None else (1 / values.clamp(min=1e-6) if near_bright else values)
        shown = normalize(shown, "minmax" if normalization == "none" or reference_depth is not None else normalization)
        if invert:
            shown = 1 - shown
            values = 1 - values if reference_depth is None and normalization != "none" else values
        image_out = shown[..., None].expand(*shown.shape, 3).contiguous()
        return (image_out, values, colorize(shown, colormap), json.dumps(alignment))


class RGBToNormal:
    DESCRIPTION = (
        "Decodes a DICEPTION normal answer (trained as (n + 1)/2): unit normals, re-coloured in the chosen axis "
        "convention (as decoded: OpenGL, +X right, +Y up, +Z towards the viewer)."
    )
    CATEGORY = "DICEPTION/decoders"
    FUNCTION = "decode"
    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("normal_map",)
    OUTPUT_TOOLTIPS = ("unit normals as colours ((n + 1) / 2) in the chosen convention",)

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "image": ("IMAGE", {"tooltip": "a DICEPTION normal answer (Perceive Task, task normal)"}),
                "convention": (list(CONVENTIONS), {"default": list(CONVENTIONS)[0], "tooltip": "axis convention of the output colours: OpenGL as decoded (+Y up), DirectX (+Y down), or NormalBAE ControlNet (X flipped)"}),
            }
        }

    def decode(self, image, convention):
        return (encode_normals(decode_normals(image, convention)),)


MASK_MODES = ("threshold (point / semantic)", "instances (entity / semantic colours)")


class RGBToMasks:
    DESCRIPTION = (
        "Decodes segmentation answers into a MASK batch: threshold white-on-black masks, or split colour-coded "
        "entity/semantic maps into one mask per instance (CIELAB colour clustering + connected components, touching "
        "regions of close colours merged, largest first). Connect the photo the answer was made from, and touching "
        "regions with no edge between them in the photo are one instance too. With no instance, one empty mask is "
        "returned and count is 0."
    )
    CATEGORY = "DICEPTION/decoders"
    FUNCTION = "decode"
    RETURN_TYPES = ("MASK", "INT")
    RETURN_NAMES = ("masks", "count")
    OUTPUT_TOOLTIPS = ("the masks: one per image (threshold) or one per instance, largest first", "how many masks were found (0 when none)")

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "image": ("IMAGE", {"tooltip": "a DICEPTION point, entity or semantic segmentation answer"}),
                "mode": (list(MASK_MODES), {"default": MASK_MODES[0], "tooltip": "threshold: white-on-black answers (point, semantic) → one mask per image; instances: colour-coded answers (entity) → one mask per instance"}),
                "threshold": ("FLOAT", {"default": 0.5, "min": 0.0, "max": 1.0, "step": 0.01, "tooltip": "threshold mode: pixels whose channel mean is at least this are the mask"}),
                "tolerance": ("FLOAT", {"default": 12.0, "min": 1.0, "max": 100.0, "step": 0.5, "tooltip": "colour distance (ΔE in CIELAB) within one instance"}),
                "min_area": ("INT", {"default": 64, "min": 1, "max": 1 << 20, "tooltip": "smaller regions join the region they touch most, or are dropped"}),
            },
            "optional": {  # optional: graphs saved before it was added still run
                "merge_tolerance": ("FLOAT", {"default": MERGE_TOLERANCE, "min": 0.0, "max": 100.0, "step": 0.5, "tooltip": "touching regions whose mean colours are closer than this (ΔE) are one instance: a model unsure of an object's colour paints it in patches; 0 keeps every colour apart"}),
                "photo": ("IMAGE", {"tooltip": "instances mode: the image the answer was made from (one, or one per answer; any size). Touching regions with no edge between them in the photo are one instance"}),
                "edge_tolerance": ("FLOAT", {"default": EDGE_TOLERANCE, "min": 0.5, "max": 100.0, "step": 0.5, "tooltip": "with a photo: its edge strength (ΔE per pixel; a sharp colour step of ΔE d reads d/2) that keeps two touching regions apart"}),
            },
        }

    def decode(self, image, mode, threshold, tolerance, min_area, merge_tolerance=MERGE_TOLERANCE, photo=None,
               edge_tolerance=EDGE_TOLERANCE):
        if mode == MASK_MODES[0]:
            masks = decode_mask(image, threshold)
            return (masks, int(masks.shape[0]))
        photos = photo_per_answer(image, photo)
        found = [decode_instances(picture, tolerance, min_area, merge_tolerance, source, edge_tolerance)
                 for picture, source in comfy_adapter.each(zip(image, photos))]
        masks = torch.cat(found).float()
        if masks.shape[0] == 0:
            return (torch.zeros(1, *image.shape[1:3]), 0)
        return (masks, int(masks.shape[0]))


class RGBToPose:
    DESCRIPTION = (
        "Best-effort OpenPose keypoints from a DICEPTION pose answer (a rendered skeleton in OpenPose colours): "
        "the OpenPose JSON of every image of the batch. Joints hidden under other strokes are missed."
    )
    CATEGORY = "DICEPTION/decoders"
    FUNCTION = "decode"
    RETURN_TYPES = ("STRING",)
    RETURN_NAMES = ("openpose_json",)
    OUTPUT_TOOLTIPS = ("OpenPose JSON, one entry per image (18 keypoints per person; hidden joints have confidence 0)",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"image": ("IMAGE", {"tooltip": "a DICEPTION pose answer (Perceive Task, task pose)"})}}

    def decode(self, image):
        return (json.dumps([decode_keypoints(picture) for picture in comfy_adapter.each(image)]),)


class SaveDepth:
    DESCRIPTION = (
        "Writes depth maps as 16-bit PNG (values in [0, 1] × 65535, metric depth in millimetres) and/or float32 "
        ".npy into the output folder, numbered like SaveImage; existing files are never overwritten."
    )
    CATEGORY = "DICEPTION/decoders"
    FUNCTION = "save"
    OUTPUT_NODE = True
    RETURN_TYPES = ()

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "depth": ("MASK", {"tooltip": "the depth output of RGB-to-Depth Decoder"}),
                "filename_prefix": ("STRING", {"default": "depth/diception", "tooltip": "relative to the output folder: sub/folders/prefix, written as prefix_00001.png; never absolute or with '..'"}),
                "format": (list(FORMATS), {"default": "png16+npy", "tooltip": "png16: 16-bit PNG (values × 65535, or metric depth in mm); npy: float32 array, exact"}),
            }
        }

    def save(self, depth, filename_prefix, format):
        output_dir = os.path.realpath(folder_paths.get_output_directory())
        maps = [item.float().cpu().numpy() for item in depth.reshape(-1, *depth.shape[-2:])]
        images, arrays = [], []  # PNGs show in the graph editor; .npy files are listed for API clients (/view serves them)
        for path in save_depth_maps(output_dir, filename_prefix, maps, format):
            subfolder = os.path.relpath(path.parent, output_dir)
            entry = {"filename": path.name, "subfolder": "" if subfolder == "." else subfolder, "type": "output"}
            (images if path.suffix == ".png" else arrays).append(entry)
        return {"ui": {"images": images, "depth_arrays": arrays}}


NODE_CLASS_MAPPINGS = {
    "DiceptionRGBToDepth": RGBToDepth,
    "DiceptionRGBToNormal": RGBToNormal,
    "DiceptionRGBToMasks": RGBToMasks,
    "DiceptionRGBToPose": RGBToPose,
    "DiceptionSaveDepth": SaveDepth,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "DiceptionRGBToDepth": "RGB-to-Depth Decoder",
    "DiceptionRGBToNormal": "RGB-to-Normal Decoder",
    "DiceptionRGBToMasks": "RGB-to-Masks Decoder",
    "DiceptionRGBToPose": "RGB-to-Pose Keypoints",
    "DiceptionSaveDepth": "Save Depth",
}
