"""Peak memory (RSS) against the input image's size, for what PerSAM Segment, PerSAM-assisted DreamBooth Mask and
Perceive Task compute (issues 19, 29).

    python bench/memory_by_image_size.py [--sizes 1 16 64 144] [--nodes persam dreambooth dreambooth_whole diception]

Each (node, size) runs in its own process with the tiny test models on the CPU: load the model, make the input
(one square float32 IMAGE of that many megapixels, as ComfyUI's LoadImage gives it), then run what the node runs:
PerSAM Segment = ``segment_frames`` + the preview (``overlay``), with the instance images (no copy when each image
has one instance); Perceive Task = the DICEPTION pipeline (depth, 1 step, resolution 64). Printed per size: the
peak RSS of the process, the growth over the RSS after loading the model (before the input existed), the input
and output bytes (PerSAM: masks + preview + instance masks; the instance images are the input itself;
DICEPTION: the answer), and growth / (input + output): the multiple the node needs of what it must hold anyway.
The last column is the baseline measured in the same run: the child's RSS before the input. The pack's bound:
growth ≤ 1.2 × (input + output) + 0.3 GB.

DreamBooth Mask = ``segment_frames`` + ``training_mask`` in place, in bands (fill holes, grow 4, feather 2) + the
loss mask + the preview (``kept_regions``); output = masks + loss masks + preview. ``dreambooth_whole`` runs the
same steps the way the node did before issue 29 (scipy on the whole image, float64 distance maps, stacked copies):
the trivial baseline of the same run. For ``dreambooth`` the column "max gap s" is the longest time between two
interrupt checks from the end of segmentation to the end (an interrupt is honoured within it).
"""

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def square(megapixels: int) -> torch.Tensor:
    """A (1, S, S, 3) float32 image of ``megapixels`` · 10⁶ pixels: smooth colours and a bright square."""
    side = int(round((megapixels * 1e6) ** 0.5))
    image = torch.empty(1, side, side, 3)
    ramp = torch.linspace(0, 1, side)
    image[0, :, :, 0] = ramp[None, :]
    image[0, :, :, 1] = ramp[:, None]
    image[0, :, :, 2] = 0.3
    image[0, side // 3 : side // 2, side // 3 : side // 2] = 0.95
    return image


def run_persam(megapixels: int) -> dict:
    from PIL import Image

    from models.persam import load_sam, make_reference
    from models.persam.frames import segment_frames

    data = ROOT / "tests" / "fixtures" / "persam"
    sam = load_sam(data / "tiny_sam.safetensors")
    picture = lambda name: np.asarray(Image.open(data / "data" / name).convert("RGB"))  # noqa: E731
    reference = make_reference(sam, picture("ref.png"), picture("ref_mask.png")[..., 0])
    overlay = load_overlay()
    before = rss_mb()
    images = square(megapixels)
    start = time.perf_counter()
    result = segment_frames(sam, reference, images, batch_size=4)
    preview = overlay(images, result.masks)
    frames = result.instance_frames or [0]
    instance_images = images if frames == list(range(images.shape[0])) else images[frames]
    seconds = time.perf_counter() - start
    output = result.masks.nbytes + preview.nbytes + result.instance_masks.nbytes
    output += 0 if instance_images is images else instance_images.nbytes
    return {"before": before, "input": images.nbytes, "output": output, "seconds": seconds}


def load_overlay():
    """PerSAM Segment's preview (nodes/persam_nodes.py ``overlay``), loaded without ComfyUI: it is plain torch."""
    import ast

    source = (ROOT / "nodes" / "persam_nodes.py").read_text()
    tree = ast.parse(source)
    function = next(node for node in tree.body if isinstance(node, ast.FunctionDef) and node.name == "overlay")
    namespace = {"torch": torch}
    exec(compile(ast.Module([function], []), "nodes/persam_nodes.py", "exec"), namespace)
    return namespace["overlay"]


def run_dreambooth(megapixels: int, whole: bool = False) -> dict:
    from PIL import Image

    from models.dreambooth.masks import kept_regions, latent_loss_mask, training_mask
    from models.persam import load_sam, make_reference
    from models.persam.frames import segment_frames

    data = ROOT / "tests" / "fixtures" / "persam"
    sam = load_sam(data / "tiny_sam.safetensors")
    picture = lambda name: np.asarray(Image.open(data / "data" / name).convert("RGB"))  # noqa: E731
    reference = make_reference(sam, picture("ref.png"), picture("ref_mask.png")[..., 0])
    before = rss_mb()
    images = square(megapixels)
    start = time.perf_counter()
    result = segment_frames(sam, reference, images, batch_size=4)
    masks = result.masks
    del result
    checks = [time.perf_counter()]
    check = lambda: checks.append(time.perf_counter())  # noqa: E731
    if whole:
        masks = whole_image_training_mask(masks, 4, 2)
        preview = images * (0.25 + 0.75 * masks[..., None])
    else:
        training_mask(masks, 4, 2, True, in_place=True, check=check)
        preview = kept_regions(images, masks, check=check)
    loss = latent_loss_mask(masks, 8)
    checks.append(time.perf_counter())
    seconds = time.perf_counter() - start
    gap = max(b - a for a, b in zip(checks, checks[1:]))
    return {"before": before, "input": images.nbytes, "output": masks.nbytes + loss.nbytes + preview.nbytes,
            "seconds": seconds, "gap": gap}


def whole_image_training_mask(masks, grow_pixels, feather_pixels):
    """DreamBooth Mask's post-processing before issue 29: scipy on whole images, float64 distances, stacked copies."""
    from scipy import ndimage

    def outside(m):
        return ndimage.distance_transform_edt(~m) if m.any() else np.full(m.shape, np.inf)

    filled = torch.from_numpy(np.stack([ndimage.binary_fill_holes(m > 0.5) for m in masks.numpy()])).float()
    grown = torch.from_numpy(np.stack([outside(m > 0.5) <= grow_pixels for m in filled.numpy()])).float()
    return torch.from_numpy(np.stack([np.clip(1 - outside(m > 0.5) / (feather_pixels + 1), 0, 1)
                                      for m in grown.numpy()])).float()


def run_diception(megapixels: int) -> dict:
    import tempfile

    from models.diception import load_pipeline

    model = ROOT / "tests" / "fixtures" / "diception" / "model"
    cache = tempfile.mkdtemp()
    pipe = load_pipeline(model / "tiny_sd3", model / "diception_tiny.safetensors", torch.float32, cache)
    pipe(square(1)[:, :64, :64], "depth", steps=1, guidance=1.0, seed=0, resolution=64)  # fills the prompt cache
    before = rss_mb()
    images = square(megapixels)
    start = time.perf_counter()
    answer = pipe(images, "depth", steps=1, guidance=1.0, seed=0, resolution=64)
    seconds = time.perf_counter() - start
    return {"before": before, "input": images.nbytes, "output": answer.nbytes, "seconds": seconds}


def child(node: str, megapixels: int):
    torch.set_num_threads(2)
    run = {"persam": run_persam, "diception": run_diception, "dreambooth": run_dreambooth,
           "dreambooth_whole": lambda mp: run_dreambooth(mp, whole=True)}[node]
    found = run(megapixels)
    found["peak"] = peak_mb()
    print(json.dumps(found))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 16, 64, 144], help="megapixels")
    nodes = ["persam", "dreambooth", "dreambooth_whole", "diception"]
    parser.add_argument("--nodes", nargs="+", default=nodes, choices=nodes)
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.child[0], int(args.child[1]))
    names = {"persam": "PerSAM Segment", "diception": "Perceive Task (depth, resolution 64, 1 step)",
             "dreambooth": "PerSAM-assisted DreamBooth Mask (fill holes, grow 4, feather 2; in bands, in place)",
             "dreambooth_whole": "DreamBooth Mask as before issue 29 (whole-image scipy): baseline"}
    print("tiny models, CPU, one image per run, each size in its own process; MB = 2^20 bytes")
    for node in args.nodes:
        print(f"\n{names[node]}")
        print(f"{'Mpx':>5} {'side':>6} {'input MB':>9} {'output MB':>10} {'peak RSS MB':>12} {'growth MB':>10} "
              f"{'growth/(in+out)':>16} {'bound MB':>9} {'s':>6} {'max gap s':>10} {'baseline RSS MB':>16}")
        for megapixels in args.sizes:
            done = subprocess.run([sys.executable, __file__, "--child", node, str(megapixels)], capture_output=True, text=True)
            if done.returncode != 0:
                print(f"{megapixels:>5} failed (exit {done.returncode}): {done.stderr.strip()[-300:]}")
                continue
            r = json.loads(done.stdout.strip().splitlines()[-1])
            mb = 2 ** 20
            growth = r["peak"] - r["before"]
            side = int(round((megapixels * 1e6) ** 0.5))
            bound = (1.2 * (r["input"] + r["output"]) + 0.3e9) / mb
            gap = f"{r['gap']:.2f}" if "gap" in r else "-"
            print(f"{megapixels:>5} {side:>6} {r['input'] / mb:>9.0f} {r['output'] / mb:>10.0f} {r['peak']:>12.0f} "
                  f"{growth:>10.0f} {growth * mb / (r['input'] + r['output']):>16.2f} {bound:>9.0f} {r['seconds']:>6.1f} "
                  f"{gap:>10} {r['before']:>16.0f}")


if __name__ == "__main__":
    main()
