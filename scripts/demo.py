"""The main job on a tiny built-in example, headless: start the test-engine ComfyUI with the built-in models, queue
the example workflows of workflows/api through the HTTP API, and save what they produce into demo_output/
(numbered, never overwriting).

    python scripts/demo.py [--out demo_output]

DICEPTION's depth runs on the miniature DICEPTION (scripts/miniature_diception: a tiny SD3 + DICEPTION trained on a
synthetic world of spheres, boxes and cylinders) on a held-out scene of that world, so its depth is real; PerSAM
runs on the miniature SAM (scripts/miniature_sam) on photos of its synthetic world, so its masks are real masks of
the subject (docs/miniatures.md). Every template with DICEPTION runs on the miniature DICEPTION, on scenes of its
world: PerSAM 2 too (PerSAM's point, found in the DICEPTION world's scene, drives its point segmentation).
With real weights, queue the same workflows on your ComfyUI with scripts/queue_workflow.py.
"""

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from scripts.queue_workflow import save_outputs  # noqa: E402
from scripts.local_comfyui import LocalComfyUI  # noqa: E402

MINIATURES = {  # real model names and settings in the shared workflows → the built-in miniatures
    # the miniature DICEPTION (scripts/miniature_diception), at its resolution, answering in one step as taught
    "DiceptionLoad": {"base_model": "diception_miniature", "checkpoint": "diception_miniature.safetensors", "dtype": "fp32",
                      "clip_l": "auto", "clip_g": "auto", "t5xxl": "auto"},
    "DiceptionPerceiveTask": {"resolution": 128, "steps": 1, "guidance": 1.0},
    "DiceptionTrainAdapter": {"resolution": 128},  # the node's other defaults: what bench/diception_few_shot.py measures
    "PersamSamLoader": {"checkpoint": "sam_miniature.safetensors"},  # the miniature SAM (scripts/miniature_sam)
}


def tiny(workflow: dict) -> dict:
    """The workflow on the built-in models: DICEPTION on the miniature DICEPTION (trained on the world of the templates'
    scenes and of the built-in example set: real depth, normals, masks and a learnt new task), PerSAM on the miniature
    SAM."""
    for node in workflow.values():
        node["inputs"].update(MINIATURES.get(node["class_type"], {}))
    return workflow


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "demo_output"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        engine = LocalComfyUI(work)
        try:
            for image in (ROOT / "workflows" / "images").glob("*.png"):
                shutil.copy(image, engine.dirs["input"])
            for name in ("diception_depth", "persam_segment"):  # of workflows/api (see README for all)
                workflow = tiny(json.loads((ROOT / "workflows" / "api" / f"{name}.json").read_text()))
                entry = engine.client.run(workflow)
                for path in save_outputs(engine.client, entry, args.out):
                    print(f"{name}: wrote {path}")
        finally:
            engine.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
