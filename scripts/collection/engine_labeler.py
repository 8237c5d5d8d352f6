"""The engine executor: the pack's models in the worker's process (no ComfyUI), one job = one image.

DICEPTION: the task's answer, and for depth the decoded disparity (near = bright, min-max normalised, as RGB-to-Depth
Decoder's defaults) as a 16-bit PNG (value × 65535) and a float32 ``.npy``, as Save Depth writes them. PerSAM: the
subject's mask as a PNG (0 / 255) with the reference made once by the driver (``save_reference``) and loaded by
each worker. Images are read as ComfyUI's Load Image reads them (``load_image``: every frame of a multi-frame file,
EXIF orientation, truncated files), so the answers equal the nodes'. A file of several frames gives one answer per
frame, numbered from 0 (``depth_0.png``, ``depth_1.png`` ...); a one-frame file keeps the plain names.
"""

import io
import json
import os
import socket
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageFile, ImageOps, ImageSequence, UnidentifiedImageError

from models.decoders import decode_depth, normalize
from models.decoders.export import depth_png16

from .job_outputs import JobFolder, RunLog, is_complete
from .jobs import file_digest, job_digest, job_key, result, settings_digest


def pillow(fn, arg):
    """``fn(arg)``, once more with truncated images allowed when Pillow fails (ComfyUI's node_helpers.pillow)."""
    previous = None
    try:
        return fn(arg)
    except (OSError, UnidentifiedImageError, ValueError):
        previous, ImageFile.LOAD_TRUNCATED_IMAGES = ImageFile.LOAD_TRUNCATED_IMAGES, True
        return fn(arg)
    finally:
        if previous is not None:
            ImageFile.LOAD_TRUNCATED_IMAGES = previous


def load_image(path) -> torch.Tensor:
    """(frames, H, W, 3) float32 in [0, 1], as ComfyUI's Load Image: every frame of the size of the first (an MPO's
    first only), EXIF orientation applied per frame, 16-bit 'I' scaled, truncated files read as far as they go."""
    frames = []
    with pillow(Image.open, path) as image:
        size = None
        for frame in ImageSequence.Iterator(image):
            frame = pillow(ImageOps.exif_transpose, frame)
            if frame.mode == "I":
                frame = frame.point(lambda i: i * (1 / 255))
            rgb = frame.convert("RGB")
            size = size or rgb.size
            if rgb.size == size:
                frames.append(torch.from_numpy(np.array(rgb).astype(np.float32) / 255.0))
            if image.format == "MPO":
                break
    return torch.stack(frames)


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


def digest_of(settings: dict, files) -> str:
    """The run's settings digest: every setting but where files are, and the bytes of the model / reference files."""
    kept = {k: v for k, v in settings.items() if k not in ("prompt_cache", "reference", "device")}
    return settings_digest(kept, [file_digest(path) for path in files])


def engine_settings(args, out_dir: Path, device: str) -> dict:
    """The workers' settings from the command line, with ``digest`` (``digest_of``); PerSAM's reference is made
    here once and saved."""
    dtype = args.dtype if args.dtype != "auto" else ("fp32" if device == "cpu" else "bf16")
    if args.model == "diception":
        settings = {"model": "diception", "device": device, "dtype": dtype, "base": str(Path(args.base).resolve()),
                    "checkpoint": str(Path(args.checkpoint).resolve()), "task": args.task, "category": args.category,
                    "steps": args.steps, "guidance": args.guidance, "seed": args.seed, "resolution": args.resolution,
                    "prompt_cache": str(Path(args.prompt_cache or out_dir / ".prompt_cache").resolve())}
        return {**settings, "digest": digest_of(settings, [args.base, args.checkpoint])}
    from models.persam import build_reference, load_sam
    from models.persam.reference import save_reference

    sam = load_sam(args.sam)
    reference = build_reference(sam, load_image(args.reference), [load_mask(args.reference_mask)], fine_tune=args.fine_tune)
    path = out_dir / ".persam_reference.safetensors"
    save_reference(reference, path)
    settings = {"model": "persam", "device": device, "sam": str(Path(args.sam).resolve()), "reference": str(path),
                "max_instances": args.max_instances, "overlap_stop": args.overlap_stop, "fine_tune": args.fine_tune}
    return {**settings, "digest": digest_of(settings, [args.sam, args.reference, args.reference_mask])}


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
        try:
            digest = job_digest(job, self.settings["digest"])
        except OSError as e:
            return result(job_id, "failed", f"{type(e).__name__}: {e}"[:3000], self.worker)
        if is_complete(self.out_dir, key, digest):
            return result(job_id, "skipped")
        self.log.write(id=job_id, event="start")
        try:
            if "image" not in job:
                raise ValueError(f"job {job_id!r}: no 'image' (the image file to label)")
            image = load_image(job["image"])
            files = self.diception(image) if self.settings["model"] == "diception" else self.persam(image)
            with JobFolder(self.out_dir, key, job_id, executor="engine", model=self.settings["model"],
                           worker=self.worker, digest=digest, frames=image.shape[0]) as folder:
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
        files = {}
        depths = normalize(decode_depth(answer), "minmax").float().cpu().numpy() if s["task"] == "depth" else None
        for n in range(answer.shape[0]):
            files[frame_name("answer.png", n, answer.shape[0])] = rgb_png(answer[n])
            if depths is not None:
                picture, info = depth_png16(depths[n])
                buffer = io.BytesIO()
                np.save(buffer, depths[n].astype(np.float32))
                files[frame_name("depth.png", n, answer.shape[0])] = png_bytes(picture, pnginfo=info)
                files[frame_name("depth.npy", n, answer.shape[0])] = buffer.getvalue()
        return files

    def persam(self, image: torch.Tensor) -> dict:
        from models.persam.frames import segment_frames

        found = segment_frames(self.sam, self.reference, image, 1, self.settings["max_instances"], self.settings["overlap_stop"])
        masks = (found.masks.cpu().numpy() * 255).astype(np.uint8)
        return {frame_name("mask.png", n, len(masks)): png_bytes(Image.fromarray(masks[n])) for n in range(len(masks))}


def frame_name(name: str, n: int, frames: int) -> str:
    """``depth.png`` for a one-frame file, ``depth_<n>.png`` for frame n of several."""
    return name if frames == 1 else f"{Path(name).stem}_{n}{Path(name).suffix}"
