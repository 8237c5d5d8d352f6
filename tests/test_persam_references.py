"""PerSAM from several references and negative examples (models/persam/reference.py, location_prior.py).

- One reference and no negatives is bitwise the one-shot PerSAM / PerSAM-F as it was before the reference set
  existed: ``one_shot_*`` below are that code (commit 4dcc328), composed from the unchanged building blocks.
- On the synthetic set (tests/persam_synthetic.py), with the tiny SAM: two references (both looks of the
  subject) put the positive point on the subject more often than one, and a negative (the look-alike) cuts
  the distractor picks. Figures: bench/persam_references.py (README "Several references").
"""

import numpy as np
import pytest
import torch
from conftest import FIXTURES
from safetensors.torch import load_file

from models.persam import encode_image, encode_images, load_sam, make_reference, make_reference_set, segment
from models.persam.cascade import Segmentation, persam_f_segment, persam_segment, refine_with_box, suppress
from models.persam.features import as_uint8_image, as_uint8_mask, mask_on_grid
from models.persam.location_prior import attention_similarity, location_prior, reference_prior, select_points, target_embedding
from models.persam.predict import predict
from models.persam.scale_aware import MeanLoss, MixedLoss, scale_aware_weights, weighted_logits

PERSAM = FIXTURES / "persam"


# --- the one-shot code before the reference set (commit 4dcc328) -------------------------------------------
def one_shot_reference(sam, image, mask, fine_tune=False, iterations=1000):
    array = as_uint8_image(image)
    mask = as_uint8_mask(mask, array.shape[:2])
    features = encode_image(sam, array)
    grid = mask_on_grid(sam, mask, features.features.shape[-2:])
    if not fine_tune:
        return target_embedding(features.features, grid, "mean"), None
    embedding = target_embedding(features.features, grid, "max_mean")
    points, labels = select_points(location_prior(embedding, features, sam), negative=False)
    logits_high = predict(sam, features, points, labels, multimask=True).logits_high
    weights, _ = scale_aware_weights(logits_high, torch.as_tensor(mask > 0), iterations=iterations)
    return embedding, weights


def one_shot_persam(sam, image, embedding, exclude=None):
    similarity = suppress(location_prior(embedding, image, sam), exclude)
    points, labels = select_points(similarity, negative=True)
    attn_sim = attention_similarity(similarity, image.features.shape[-2:])
    first = predict(sam, image, points, labels, multimask=False, attn_sim=attn_sim, target_embedding=embedding)
    second = predict(sam, image, points, labels, mask_input=first.logits[0:1], multimask=True)
    result = Segmentation(second.masks[second.best()], points, labels, similarity,
                          {"attn_sim": attn_sim, "pass1": first, "pass2": second})
    return refine_with_box(sam, image, result, second.masks[second.best()], second.logits[second.best()][None], "pass3")


def one_shot_persam_f(sam, image, embedding, weights):
    similarity = location_prior(embedding, image, sam)
    points, labels = select_points(similarity, negative=False)
    first = predict(sam, image, points, labels, multimask=True)
    logit_high, logit = weighted_logits(first.logits_high, weights), weighted_logits(first.logits, weights)
    result = Segmentation(logit_high > 0, points, labels, similarity, {"pass1": first})
    result = refine_with_box(sam, image, result, logit_high > 0, logit[None], "pass2")
    if "pass2" not in result.passes:
        return result
    second = result.passes["pass2"]
    return refine_with_box(sam, image, result, second.masks[second.best()], second.logits[second.best()][None], "pass3")


@pytest.fixture(scope="module")
def sam():
    return load_sam(PERSAM / "tiny_sam.pth")


def same(name, ours, old):
    assert ours.dtype == old.dtype and ours.shape == old.shape and torch.equal(ours, old), f"{name} differs from the one-shot code"


@pytest.mark.parametrize("fine_tune", [False, True])
def test_one_reference_is_bitwise_the_one_shot_code(sam, fine_tune):
    ref = load_file(str(PERSAM / "persam_reference.safetensors"))
    image, mask = ref["ref_image"].numpy(), ref["ref_mask_rgb"][..., 0].numpy()
    old_embedding, old_weights = one_shot_reference(sam, image, mask, fine_tune, iterations=100)
    for reference in (make_reference(sam, image, mask, fine_tune, iterations=100),
                      make_reference_set(sam, [image], [mask], fine_tune=fine_tune, iterations=100)):
        same("embedding", reference.embedding, old_embedding)
        assert reference.negatives is None
        if fine_tune:
            same("weights", reference.weights, old_weights)
        for test in ("persam_test1", "persam_test2"):
            picture = load_file(str(PERSAM / f"{test}.safetensors"))["image"].numpy()
            features = encode_image(sam, picture)
            new = segment(sam, reference, picture, features)
            old = (one_shot_persam_f(sam, features, old_embedding, old_weights) if fine_tune
                   else one_shot_persam(sam, features, old_embedding))
            same("similarity", new.similarity, old.similarity)
            same("points", new.points, old.points)
            same("labels", new.labels, old.labels)
            same("mask", new.mask, old.mask)
            assert set(new.passes) >= {k for k in old.passes if k.startswith("pass")}
            for name, prediction in old.passes.items():
                if name.startswith("pass") and not name.endswith("_box"):
                    same(f"{name} logits", new.passes[name].logits, prediction.logits)
                    same(f"{name} scores", new.passes[name].scores, prediction.scores)
            if not fine_tune:
                same("attn_sim", new.passes["attn_sim"], old.passes["attn_sim"])


def test_the_mean_loss_of_references_is_the_mean_of_their_losses():
    torch.manual_seed(2)
    parts = [MixedLoss(torch.randn(3, 20, 30) * 4, torch.rand(20, 30) > 0.5) for _ in range(3)]
    loss, grad, hess = MeanLoss(parts).taylor(0.3, -0.1)
    each = [p.taylor(0.3, -0.1) for p in parts]
    assert abs(loss - sum(e[0] for e in each) / 3) < 1e-9
    assert all(abs(grad[k] - sum(e[1][k] for e in each) / 3) < 1e-9 for k in range(2))
    assert abs(hess[0][1] - sum(e[2][0][1] for e in each) / 3) < 1e-9


def test_negatives_lower_the_prior_only_where_they_beat_the_positives(sam):
    """S = P − max(0, N − P); no negative point is added (the prompt's points are the prior's own)."""
    ref = load_file(str(PERSAM / "persam_reference.safetensors"))
    image, mask = ref["ref_image"].numpy(), ref["ref_mask_rgb"][..., 0].numpy() > 0
    features = encode_image(sam, image)
    positive = make_reference(sam, image, mask.astype(np.float32)).embedding
    background = make_reference(sam, image, (~mask).astype(np.float32)).embedding
    test = encode_image(sam, load_file(str(PERSAM / "persam_test1.safetensors"))["image"].numpy())
    plain, _ = reference_prior(positive, test, sam)
    lowered, _ = reference_prior(positive, test, sam, background)
    negative = location_prior(background, test, sam)
    beaten = negative > plain
    assert beaten.any() and (~beaten).any()
    assert torch.equal(lowered[~beaten], plain[~beaten])
    assert torch.allclose(lowered[beaten], 2 * plain[beaten] - negative[beaten])
    assert features.features.shape == test.features.shape
    # the prompts: PerSAM's [positive, negative] and PerSAM-F's positive point, both from the lowered prior only
    for segment, with_negative in ((persam_segment(sam, test, positive, negatives=background), True),
                                   (persam_f_segment(sam, test, positive, torch.tensor([1.0, 0.0, 0.0]), negatives=background), False)):
        points, labels = select_points(lowered, negative=with_negative)
        assert torch.equal(segment.points, points) and torch.equal(segment.labels, labels)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    from persam_synthetic import build_set
    from tiny_models import build_sam_checkpoint

    tiny = load_sam(build_sam_checkpoint(tmp_path_factory.mktemp("tiny_sam")))
    references, negative, test = build_set()
    return tiny, references, negative, test, encode_images(tiny, [s.image for s in test])


def test_the_synthetic_set_is_meaningful_for_the_tiny_sam(synthetic):
    """The random encoder separates the set's patterns: the subject's two looks differ from each other and
    from the background, and the look-alike is closer to look A than look B is (so it is a look-alike)."""
    tiny, references, negative, _, _ = synthetic
    from persam_synthetic import make_reference as reference_of

    a, b = (reference_of(tiny, [r]).embedding.flatten() for r in references)
    d = make_reference(tiny, negative.image, negative.distractor.astype(np.float32)).embedding.flatten()
    cos = lambda u, v: float(u @ v / u.norm() / v.norm())  # noqa: E731
    assert cos(a, b) < 0.5 and cos(a, d) > 0.8 and cos(a, d) > cos(b, d) + 0.3


def test_several_references_beat_one_and_a_negative_cuts_distractor_picks(synthetic):
    from persam_synthetic import evaluate, make_reference as reference_of

    tiny, references, negative, test, features = synthetic
    assert len(test) >= 12 and sum(s.distractor.any() for s in test) == len(test) // 2 and {s.look for s in test} == {"A", "B"}
    one = evaluate(tiny, reference_of(tiny, references, count=1), test, features=features)
    both = evaluate(tiny, reference_of(tiny, references), test, features=features)
    with_negative = evaluate(tiny, reference_of(tiny, references, negative), test, features=features)
    assert both.on_subject > one.on_subject, (one, both)
    assert with_negative.distractor_picks < both.distractor_picks <= one.distractor_picks, (one, both, with_negative)
    assert with_negative.on_subject >= both.on_subject, (both, with_negative)


def test_another_packs_sam_is_adopted_without_a_second_copy_and_left_as_it_was():
    from segment_anything.modeling import MaskDecoder

    from models.persam.sam_loading import adopt_sam, build_sam, config_beside

    cfg = config_beside(PERSAM / "tiny_sam.pth")
    theirs = build_sam(cfg)  # a plain segment_anything Sam, as another pack's loader returns it
    theirs.model_name = "tiny_sam.pth"
    ours = adopt_sam(theirs)
    assert all(a is b for a, b in zip(ours.parameters(), theirs.parameters()))
    assert all(a is b for a, b in zip(ours.buffers(), theirs.buffers()))
    assert type(theirs.mask_decoder) is MaskDecoder and type(ours.mask_decoder) is not MaskDecoder
    with pytest.raises(ValueError, match="sam_model: got a SAM 2 model"):
        adopt_sam({"model": type("SAM2Base", (torch.nn.Module,), {"__module__": "sam2.modeling.sam2_base"})()})
    with pytest.raises(ValueError, match="sam_model: got an object of type builtins.str"):
        adopt_sam("sam_vit_b_01ec64.pth")
