"""A test-only ComfyUI node (loaded beside the pack by tests/test_label_collection_comfy.py's servers):
``TestHoldWhileFileExists`` passes its image through once the file at ``path`` is gone, so a test decides how
long jobs last (e.g. across a server's restart) instead of making the jobs big."""

import os
import time

HOLD_LIMIT = 300  # seconds: a test that forgets to release its hold still ends


class TestHoldWhileFileExists:
    CATEGORY = "testing"
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "hold"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"image": ("IMAGE",), "path": ("STRING", {"default": ""})}}

    def hold(self, image, path):
        deadline = time.monotonic() + HOLD_LIMIT
        while path and os.path.exists(path) and time.monotonic() < deadline:
            time.sleep(0.05)
        return (image,)


NODE_CLASS_MAPPINGS = {"TestHoldWhileFileExists": TestHoldWhileFileExists}
