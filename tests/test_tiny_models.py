"""The tiny-model builders write real formats that the pack's real loaders read and run."""

import pytest
import torch

from models.diception import load_pipeline
from models.persam import load_sam, make_reference, segment
from tiny_models import build_diception_checkpoint, build_sam_checkpoint, build_sd3_folder


@pytest.fixture(scope="session")
def built(tmp_path_factory):
    return tmp_path_factory.mktemp("tiny_models")


def test_built_sd3_folder_and_checkpoint_run_diception(built):
    folder = build_sd3_folder(built)
    ckpt = build_diception_checkpoint(folder, built / "diception_built.pth")
    pipe = load_pipeline(folder, ckpt, torch.float32, built / "cache")
    answer = pipe(torch.rand(2, 40, 50, 3), "point segmentation", points=[(5, 5)], steps=2, guidance=2.0, resolution=32)
    assert answer.shape == (2, 40, 50, 3) and torch.isfinite(answer).all()


def test_built_sam_checkpoint_runs_persam(built):
    sam = load_sam(build_sam_checkpoint(built))
    assert sam.image_encoder.img_size == 256 and len(sam.image_encoder.blocks) == 2
    image = torch.rand(64, 80, 3)
    mask = torch.zeros(64, 80)
    mask[10:40, 20:60] = 1
    result = segment(sam, make_reference(sam, image, mask), image)
    assert result.mask.shape == (64, 80)
