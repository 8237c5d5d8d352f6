"""The main job on a tiny built-in example, headless: start the test-engine ComfyUI with the tiny random
DICEPTION models of tests/fixtures and the miniature SAM of scripts/miniature_sam, queue the example workflows of
workflows/api through the HTTP API, and save what they produce into demo_output/ (numbered, never overwriting).

    python scripts/demo.py [--out demo_output]

The tiny DICEPTION models are random, so their pictures are noise-like: the run shows the pack working end to end.
The miniature SAM was trained on a synthetic world (docs/miniatures.md), and the PerSAM example pictures are photos
of that world (scripts/make_example_set.py): PerSAM's masks there are real masks of the subject.
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

TINY = {  # real model names in the shared workflows → the tiny test models (SAM: the miniature that segments)
    "DiceptionLoad": {"base_model": "tiny_sd3", "checkpoint": "diception_tiny.safetensors", "dtype": "fp32",
                      "clip_l": "auto", "clip_g": "auto", "t5xxl": "auto"},  # the tiny base model's own encoders
    "DiceptionPerceiveTask": {"resolution": 64},
    "DiceptionTrainAdapter": {"steps": 2, "rank": 4, "resolution": 64},
    "PersamSamLoader": {"checkpoint": "sam_miniature.safetensors"},
}


def tiny(workflow: dict) -> dict:
    for node in workflow.values():
        node["inputs"].update(TINY.get(node["class_type"], {}))
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
