"""The model files the pack knows how to fetch: each one's name, the ComfyUI model folder it belongs in, where it lives
(a Hugging Face repository, or Meta's file host for the SAM checkpoints; mirrors from ``HF_ENDPOINT`` and
``SAM_DOWNLOAD_ENDPOINT``) and, where the published value could be verified, its size and sha256.
``models/weights_download.py`` downloads them; the templates list them for the graph editor's Missing Models panel
(``model_list_entry``); ``python -m models.weights_download`` prints them (``describe``).
"""

import json
import os
from dataclasses import dataclass

HUB = "https://huggingface.co"
META = "https://dl.fbaipublicfiles.com"
SAM_ENDPOINT_VARIABLE = "SAM_DOWNLOAD_ENDPOINT"  # a mirror of dl.fbaipublicfiles.com (tests: a local stand-in)


@dataclass(frozen=True)
class KnownFile:
    """A model file the pack can fetch. ``repo``: a Hugging Face repository (``path`` inside it); without one,
    ``path`` is the path on Meta's file host. ``size`` / ``sha256``: the published values, or None where they
    could not be verified (then the hub's own LFS sha256 and size, read while downloading, are checked)."""

    name: str
    folder: str
    path: str
    repo: str = ""
    size: int = None
    sha256: str = None
    gated: bool = False

    @property
    def url(self) -> str:
        if self.repo:
            from huggingface_hub import hf_hub_url

            return hf_hub_url(self.repo, self.path, endpoint=hub_endpoint())
        return f"{sam_endpoint()}/{self.path}"

    @property
    def public_url(self) -> str:
        """The address on the public host (for the templates and the docs), whatever mirror is configured."""
        return f"{HUB}/{self.repo}/resolve/main/{self.path}" if self.repo else f"{META}/{self.path}"

    @property
    def licence_page(self) -> str:
        return f"{HUB}/{self.repo}" if self.repo else ""


SD3 = "stabilityai/stable-diffusion-3-medium"
# Sources of the pinned values (December 2026): SAM: Meta's segment-anything README for the URLs; sizes and sha256 as
# published by several independent checksum lists (e.g. Fooocus/SimpleSDXL's models_info, ChangeSAM's verified
# hash); the 6 hex digits in each SAM name are the start of its MD5, not of its sha256. SD3-medium: the sha256 of
# sd3_medium*.safetensors as listed by SwarmUI/SimpleSDXL checksum tables and seen as blob names in the hub's cache
# (models--stabilityai--stable-diffusion-3-medium/blobs/<sha256>). NOT verified here, so checked against the hub's
# own LFS sha256 and size at download time: DICEPTION_v1.pth (Canyu/DICEPTION), sd3_medium.safetensors' size and the
# separate text encoders (text_encoders/*.safetensors of the same repository).
KNOWN_FILES = {
    known.name: known
    for known in (
        KnownFile("DICEPTION_v1.pth", "diception", "DICEPTION_v1.pth", repo="Canyu/DICEPTION"),
        KnownFile("sam_vit_h_4b8939.pth", "sams", "segment_anything/sam_vit_h_4b8939.pth", size=2564550879,
                  sha256="a7bf3b02f3ebf1267aba913ff637d9a2d5c33d3173bb679e46d9f338c26f262e"),
        KnownFile("sam_vit_l_0b3195.pth", "sams", "segment_anything/sam_vit_l_0b3195.pth", size=1249524607,
                  sha256="3adcc4315b642a4d2101128f611684e8734c41232a17c648ed1693702a49a622"),
        KnownFile("sam_vit_b_01ec64.pth", "sams", "segment_anything/sam_vit_b_01ec64.pth", size=375042383,
                  sha256="ec2df62732614e57411cdcf32a23ffdf28910380d03139ee0f4fcbe91eb8c912"),
        KnownFile("sd3_medium.safetensors", "checkpoints", "sd3_medium.safetensors", repo=SD3, gated=True,
                  sha256="cc236278d28c8c3eccb8e21ee0a67ebed7dd6e9ce40aa9de914fa34e8282f191"),
        KnownFile("sd3_medium_incl_clips.safetensors", "checkpoints", "sd3_medium_incl_clips.safetensors", repo=SD3,
                  gated=True, size=5973224240, sha256="3bb7f21bc5fb450220f4eb78a2f276b15422309d5166a4bdeb8c3b763a3a0581"),
        KnownFile("sd3_medium_incl_clips_t5xxlfp16.safetensors", "checkpoints", "sd3_medium_incl_clips_t5xxlfp16.safetensors",
                  repo=SD3, gated=True, size=15761074532,
                  sha256="69a950c5d143ce782a7423c532c8a12b75da6a37b0e6f26a322acf4e76208912"),
        KnownFile("sd3_medium_incl_clips_t5xxlfp8.safetensors", "checkpoints", "sd3_medium_incl_clips_t5xxlfp8.safetensors",
                  repo=SD3, gated=True, size=10867168284,
                  sha256="92db4295e9c9ab8401ef60566d975656a35b0bd0f6d9ce0d083725171f7b3174"),
        KnownFile("clip_l.safetensors", "text_encoders", "text_encoders/clip_l.safetensors", repo=SD3, gated=True),
        KnownFile("clip_g.safetensors", "text_encoders", "text_encoders/clip_g.safetensors", repo=SD3, gated=True),
        KnownFile("t5xxl_fp16.safetensors", "text_encoders", "text_encoders/t5xxl_fp16.safetensors", repo=SD3, gated=True),
        KnownFile("t5xxl_fp8_e4m3fn.safetensors", "text_encoders", "text_encoders/t5xxl_fp8_e4m3fn.safetensors", repo=SD3,
                  gated=True),
    )
}


def known_in(folder: str) -> list:
    """The known files that belong in the model folder ``folder`` (e.g. ``"sams"``), by name."""
    return [name for name, known in KNOWN_FILES.items() if known.folder == folder]


def hub_endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", HUB).rstrip("/")  # read at each call (huggingface_hub reads it at import)


def sam_endpoint() -> str:
    return os.environ.get(SAM_ENDPOINT_VARIABLE, META).rstrip("/")


def model_list_entry(known: KnownFile, name: str = None) -> dict:
    """The graph editor's ``properties.models`` entry (frontend 1.58.1 Missing Models panel): ``name`` must equal the
    widget's value; ``hash`` / ``hash_type`` only where the sha256 is pinned."""
    entry = {"name": name or known.name, "url": known.public_url, "directory": known.folder}
    if known.sha256:
        entry.update(hash=known.sha256, hash_type="sha256")
    return entry


def describe() -> str:
    """The known files as JSON (name, folder, URL, size, sha256): ``python -m models.weights_download``."""
    return json.dumps([{"name": k.name, "folder": k.folder, "url": k.public_url, "size": k.size, "sha256": k.sha256,
                        "gated": k.gated} for k in KNOWN_FILES.values()], indent=1)
