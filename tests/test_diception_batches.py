"""DICEPTION on batches: chunked VAE / transformer calls give each image the answer it gets alone in the
batch (fp32 within 1e-5), one point list per image, progress per step of each chunk."""

import pytest
import torch
from conftest import FIXTURES

from models.diception import load_pipeline, parse_batch_points

DICE = FIXTURES / "diception" / "model"


@pytest.fixture(scope="module")
def pipe(tmp_path_factory):
    return load_pipeline(DICE / "tiny_sd3", DICE / "diception_tiny.safetensors", torch.float32, tmp_path_factory.mktemp("cache"))


def test_chunked_answers_match_one_at_a_time(pipe):
    images = torch.rand(5, 40, 56, 3, generator=torch.Generator().manual_seed(1))
    points = [[(5, 6)], [(50, 30), (10, 10)], [(20, 20)], [(1, 39)], [(55, 0)]]
    kw = dict(points=points, steps=2, guidance=2.0, resolution=64, seed=4)
    single = pipe(images, "point segmentation", batch_size=1, **kw)
    for size in (2, 5):
        chunked = pipe(images, "point segmentation", batch_size=size, **kw)
        assert (chunked - single).abs().max().item() <= 1e-5, size
    # each image uses its own points: swapping two images' points changes exactly those answers
    swapped = pipe(images, "point segmentation", batch_size=5, **{**kw, "points": [points[1], points[0]] + points[2:]})
    per_image = (swapped - single).flatten(1).abs().max(1).values
    assert per_image[0] > 1e-3 and per_image[1] > 1e-3 and per_image[2:].max() <= 1e-5


def test_one_list_applies_to_every_image(pipe):
    images = torch.rand(3, 32, 32, 3, generator=torch.Generator().manual_seed(2))
    kw = dict(steps=1, guidance=1.0, resolution=64, seed=0)
    shared = pipe(images, "point segmentation", points=[(3, 4)], **kw)
    listed = pipe(images, "point segmentation", points=[[(3, 4)]] * 3, batch_size=2, **kw)
    assert torch.allclose(shared, listed, atol=1e-5)


def test_progress_counts_image_steps_per_chunk(pipe):
    seen = []
    pipe(torch.rand(5, 32, 32, 3), "depth", steps=2, guidance=1.0, resolution=64, batch_size=2, callback=lambda d, t: seen.append((d, t)))
    assert seen == [(2, 10), (4, 10), (6, 10), (8, 10), (9, 10), (10, 10)]


def test_bad_batch_inputs_are_clear_errors(pipe):
    with pytest.raises(ValueError, match="2 point lists for a batch of 3"):
        pipe(torch.rand(3, 32, 32, 3), "point segmentation", points=[[(1, 1)], [(2, 2)]], steps=1, resolution=64)
    with pytest.raises(ValueError, match=r"image 1 of the batch"):
        pipe(torch.rand(2, 32, 32, 3), "point segmentation", points=[[(1, 1)], []], steps=1, resolution=64)
    with pytest.raises(ValueError, match="batch_size"):
        pipe(torch.rand(1, 32, 32, 3), "depth", steps=1, resolution=64, batch_size=0)


def test_batch_points_parse_kjnodes_lists_per_image():
    assert parse_batch_points('[{"x": 1, "y": 2}]', 10, 10, 3) == [[(1.0, 2.0)]] * 3
    assert parse_batch_points('[[{"x": 1, "y": 2}], [[3, 4], [5, 6]]]', 10, 10, 2) == [[(1.0, 2.0)], [(3.0, 4.0), (5.0, 6.0)]]
    assert parse_batch_points('[[{"x": 1, "y": 2}]]', 10, 10, 2) == [[(1.0, 2.0)]] * 2
    assert parse_batch_points("[]", 10, 10, 2) == [[], []]
    with pytest.raises(ValueError, match="points of image 1: points\\[0\\].*outside"):
        parse_batch_points('[[{"x": 1, "y": 2}], [{"x": 11, "y": 2}]]', 10, 10, 2)
    with pytest.raises(ValueError, match="3 point lists for a batch of 2"):
        parse_batch_points("[[[1, 1]], [[1, 1]], [[1, 1]]]", 10, 10, 2)
