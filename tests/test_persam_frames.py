"""PerSAM engine on batches: the SDPA encoder attention matches segment_anything's own, chunked encoding
matches one image at a time, video carries each instance's previous box, per-frame / per-instance results."""

from functools import partial

import pytest
import torch
from segment_anything.modeling import ImageEncoderViT
from segment_anything.modeling.image_encoder import Attention

from models.persam import encode_image, encode_images, make_reference
from models.persam import encoder_attention
from models.persam.encoder_attention import EfficientRelPosAttention, enable_efficient_attention
from models.persam.frames import segment_frames
from models.persam.video import BOX_MARGIN, carried_prompt


def encoder(img_size=224, global_attn_indexes=(1, 3)):
    torch.manual_seed(0)
    enc = ImageEncoderViT(depth=4, embed_dim=64, img_size=img_size, num_heads=4, patch_size=16, qkv_bias=True,
                          use_rel_pos=True, global_attn_indexes=global_attn_indexes, window_size=5, out_chans=32,
                          norm_layer=partial(torch.nn.LayerNorm, eps=1e-6))
    for name, p in enc.named_parameters():
        if "rel_pos" in name:
            torch.nn.init.normal_(p, std=0.5)  # zero by default: make the bias matter
    return enc.eval().requires_grad_(False)


@pytest.mark.parametrize("budget", [encoder_attention.MASK_BUDGET, 1])
def test_efficient_attention_matches_the_package(monkeypatch, budget):
    """Windows with padding (14 % 5 ≠ 0) and global blocks; budget 1 forces one query row per SDPA call."""
    monkeypatch.setattr(encoder_attention, "MASK_BUDGET", budget)
    enc, x = encoder(), torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    expected = enc(x)
    holder = torch.nn.Module()
    holder.image_encoder = enc
    enable_efficient_attention(holder)
    assert all(type(b.attn) is EfficientRelPosAttention for b in enc.blocks)
    assert (enc(x) - expected).abs().max().item() <= 1e-5


def test_loaded_sams_use_the_efficient_attention():
    from conftest import FIXTURES
    from models.persam import load_sam

    sam = load_sam(FIXTURES / "persam" / "tiny_sam.safetensors")
    assert all(type(b.attn) is EfficientRelPosAttention for b in sam.image_encoder.blocks)
    assert not any(type(m) is Attention for m in sam.modules())


def test_chunked_encoding_matches_one_at_a_time(small_sam):
    images = [torch.rand(48, 64, 3), torch.rand(64, 40, 3), torch.rand(50, 50, 3)]
    chunked = encode_images(small_sam, images, batch_size=2)
    for image, found in zip(images, chunked):
        alone = encode_image(small_sam, image)
        assert found.input_size == alone.input_size and found.original_size == alone.original_size
        assert (found.features - alone.features).abs().max().item() <= 1e-5
    with pytest.raises(ValueError, match="batch_size"):
        encode_images(small_sam, images, batch_size=0)


def test_carried_prompt_grows_the_box_and_adds_its_centre():
    points, labels = torch.tensor([[5, 6], [1, 1]]), torch.tensor([1, 0])
    p, l, box = carried_prompt(points, labels, torch.tensor([4, 30, 40, 90]), height=100, width=45)
    assert box.tolist() == [0, 30 - BOX_MARGIN, 44, 99] and l.tolist() == [1, 0, 1]
    assert p[-1].tolist() == [22, 59] and torch.equal(p[:2], points)
    assert carried_prompt(points, labels, None, 100, 45) == (points, labels, None)


def test_frames_give_per_frame_points_and_per_instance_masks(small_sam, monkeypatch):
    image = torch.rand(64, 80, 3, generator=torch.Generator().manual_seed(3))
    mask = torch.zeros(64, 80)
    mask[10:40, 20:50] = 1
    reference = make_reference(small_sam, image, mask)
    frames = torch.stack([torch.roll(image, 8 * k, dims=1) for k in range(5)])
    seen = []
    one = segment_frames(small_sam, reference, frames, batch_size=1, max_instances=2, overlap_stop=1.0, callback=lambda d, t: seen.append((d, t)))
    several = segment_frames(small_sam, reference, frames, batch_size=3, max_instances=2, overlap_stop=1.0)
    assert seen == [(i, 5) for i in range(1, 6)]
    assert torch.equal(one.masks, several.masks) and one.points == several.points and one.instance_frames == several.instance_frames
    assert one.masks.shape == (5, 64, 80) and len(one.points) == 5 and len(one.instance_frames) > 5  # some frame has 2
    assert len(one.instance_masks) == len(one.instance_frames) and one.instance_frames == sorted(one.instance_frames)
    for i in range(5):
        own = one.instance_masks[[j for j, f in enumerate(one.instance_frames) if f == i]]
        assert torch.equal(own.amax(0) if len(own) else torch.zeros(64, 80), one.masks[i])
        assert len(one.points[i]) == max(1, len(own))

    # video: every search of frame k > 0 gets the box its instance had in frame k − 1
    import models.persam.cascade as cascade

    calls = []
    original = cascade.carried_prompt
    monkeypatch.setattr(cascade, "carried_prompt", lambda p, l, box, h, w: calls.append(box) or original(p, l, box, h, w))
    video = segment_frames(small_sam, reference, frames, batch_size=2, max_instances=1, video=True)
    assert calls[0] is None and len(calls) == 5 and all(c is not None for c in calls[1:])
    for k in range(1, 5):
        previous = video.masks[k - 1].bool()
        ys, xs = torch.nonzero(previous, as_tuple=True)
        expected = None if len(xs) == 0 else [xs.min(), ys.min(), xs.max(), ys.max()]
        assert (calls[k] is None) if expected is None else calls[k].tolist() == [int(v) for v in expected]
