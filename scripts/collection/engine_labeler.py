"""The engine executor: the pack's models in the worker's process (no ComfyUI), one job = one image.

DICEPTION: the task's answer, and for depth the decoded disparity (near = bright, min-max normalised, as RGB-to-Depth
Decoder's defaults) as a 16-bit PNG (value × 65535) and a float32 ``.npy``, as Save Depth writes them. PerSAM: the
subject's mask as a PNG (0 / 255) with the reference made once by the driver (``save_reference``) and loaded by
each worker. Images are read as ComfyUI's Load Image reads them, so the answers equal the nodes'.
"""

import io
import json
import os
import socket
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

from models.decoders import decode_depth, normalize
from models.decoders.export import depth_png16

from .job_outputs import JobFolder, RunLog, is_complete
from .jobs import job_key, result


def load_image(path) -> torch.Tensor:
    """(1, H, W, 3) float32 in [0, 1], as ComfyUI's Load Image (EXIF orientation applied, 16-bit 'I' scaled)."""
    with Image.open(path) as image:
        image = ImageOps.exif_transpose(image)
        if image.mode == "I":
            image = image.point(lambda i: i * (1 / 255))
        array = np.array(image.convert("RGB")).astype(np.float32) / 255.0
    return torch.from_numpy(array)[None]


def load_mask(path) -> torch.Tensor:
    """(H, W) float in [0, 1] from a mask image (white = subject; the first channel)."""
    with Image.open(path) as image:
        image = ImageOps.exif_transpose(image)
        return torch.from_numpy(np.array(image.convert("RGB"))[..., 0].astype(np.float32) / 255.0)


def png_bytes(image: Image.Image, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", **kwargs)
    return buffer.getvalue()


def rgb_png(answer: torch.Tensor) -> bytes:
    """(H, W, 3) in [0, 1] → an 8-bit PNG, rounded as ComfyUI's Save Image (truncation of 255·x)."""
    return png_bytes(Image.fromarray(np.clip(255.0 * answer.cpu().numpy(), 0, 255).astype(np.uint8)))


def engine_settings(args, out_dir: Path, device: str) -> dict:
    """The workers' settings from the command line; PerSAM's reference is made here once and saved."""
    dtype = args.dtype if args.dtype != "auto" else ("fp32" if device == "cpu" else "bf16")
    if args.model == "diception":
        return {"model": "diception", "device": device, "dtype": dtype, "base": str(Path(args.base).resolve()),
                "checkpoint": str(Path(args.checkpoint).resolve()), "task": args.task, "category": args.category,
                "steps": args.steps, "guidance": args.guidance, "seed": args.seed, "resolution": args.resolution,
                "prompt_cache": str(Path(args.prompt_cache or out_dir / ".prompt_cache").resolve())}
    from models.persam import build_reference, load_sam
    from models.persam.reference import save_reference

    sam = load_sam(args.sam)
    reference = build_reference(sam, load_image(args.reference), [load_mask(args.reference_mask)], fine_tune=args.fine_tune)
    path = out_dir / ".persam_reference.safetensors"
    save_reference(reference, path)
    return {"model": "persam", "device": device, "sam": str(Path(args.sam).resolve()), "reference": str(path),
            "max_instances": args.max_instances, "overlap_stop": args.overlap_stop}


class EngineLabeler:
    """A Ray Data worker holding the model on its device (one GPU, or the CPU); one manifest row per call."""

    def __init__(self, settings: dict, out_dir):
        self.settings, self.out_dir = settings, Path(out_dir)
        self.worker = f"{socket.gethostname()}-{os.getpid()}"
        self.log = RunLog(out_dir, self.worker)
        device = torch.device(settings["device"])
        if settings["model"] == "diception":
            from models.diception import DTYPES, load_pipeline

            self.pipeline = load_pipeline(settings["base"], settings["checkpoint"], DTYPES[settings["dtype"]], settings["prompt_cache"])
            for part in (self.pipeline.transformer, self.pipeline.point_encoder, self.pipeline.vae):
                part.to(device)
        else:
            from models.persam import load_sam
            from models.persam.reference import load_reference

            self.sam = load_sam(settings["sam"]).to(device)
            self.reference = load_reference(settings["reference"], device)

    def __call__(self, row: dict) -> dict:
        job = json.loads(row["job"])
        job_id, key, started = job["id"], job_key(job["id"]), time.monotonic()
        if is_complete(self.out_dir, key):
            return result(job_id, "skipped")
        self.log.write(id=job_id, event="start")
        try:
            if "image" not in job:
                raise ValueError(f"job {job_id!r}: no 'image' (the image file to label)")
            image = load_image(job["image"])
            files = self.diception(image) if self.settings["model"] == "diception" else self.persam(image)
            with JobFolder(self.out_dir, key, job_id, executor="engine", model=self.settings["model"], worker=self.worker) as folder:
                for name, data in files.items():
                    folder.write_bytes(name, data)
        except Exception as e:  # this job's error (unreadable image, ...): the run goes on
            self.log.write(id=job_id, event="failed")
            return result(job_id, "failed", f"{type(e).__name__}: {e}"[:3000], self.worker, time.monotonic() - started)
        self.log.write(id=job_id, event="done", placed=folder.placed)
        return result(job_id, "done", server=self.worker, seconds=time.monotonic() - started)

    def diception(self, image: torch.Tensor) -> dict:
        s = self.settings
        answer = self.pipeline(image, s["task"], category=s["category"], steps=s["steps"], guidance=s["guidance"],
                               seed=s["seed"], resolution=s["resolution"], batch_size=1)
        files = {"answer.png": rgb_png(answer[0])}
        if s["task"] == "depth":
            depth = normalize(decode_depth(answer), "minmax")[0].float().cpu().numpy()
            picture, info = depth_png16(depth)
            buffer = io.BytesIO()
            np.save(buffer, depth.astype(np.float32))
            files.update({"depth.png": png_bytes(picture, pnginfo=info), "depth.npy": buffer.getvalue()})
        return files

    def persam(self, image: torch.Tensor) -> dict:
        from models.persam.frames import segment_frames

        found = segment_frames(self.sam, self.reference, image, 1, self.settings["max_instances"], self.settings["overlap_stop"])
        mask = (found.masks[0].cpu().numpy() * 255).astype(np.uint8)
        return {"mask.png": png_bytes(Image.fromarray(mask))}
