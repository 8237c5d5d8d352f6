"""The miniature SAM (scripts/miniature_sam) and its synthetic PerSeg.

- The synthetic PerSeg is deterministic and its masks are exact (each photo's subject mask is where the subject's
  paint is; the look-alike never covers it), with the structure the bench relies on (parts, two looks,
  look-alike photos, sequences).
- The pack's loader reads the committed miniature's non-standard sizes off its weights (and the decoder's head
  count, which the weights do not show, from the config beside them).
- The training script's first steps reproduce the committed run's losses (scripts/miniature_sam/train.py).
- The committed miniature segments from one point and from a box (better than the box as the mask), and one-shot
  PerSAM on it beats the best constant mask; floors and margins from the spreads measured by bench/persam_quality.py.
Quality figures: bench/persam_quality.py (docs/persam.md, "Quality on a miniature SAM").
"""

import json

import numpy as np
import pytest
import torch

from scripts.miniature_sam import measure, train, world

LOG = measure.WEIGHTS.with_suffix(".log.json")
STEP_TOLERANCE = 1e-4  # relative; 1 and 2 threads gave identical losses here, other CPUs' fp32 kernels differ ~1e-6
# Quality floors of the committed weights (4000 steps), from the spread over disjoint blocks of held-out scenes
# (point IoU 0.818 on scenes 0-59, 0.796 on 0-99; box-as-mask 0.56-0.59) and over PerSeg seeds 0-5
# (bench/persam_quality.py: one-shot PerSAM 0.594 … 0.801, seed 0: 0.801; best constant 0.109 … 0.161; point on the
# subject well above a random point's 0.06 … 0.08).
FIRST_SCENE, SCENES = 0, 20
POINT_IOU_FLOOR, MARGIN = 0.7, 0.1
TEST_PERSEG_SEED, PERSAM_IOU_FLOOR = 0, 0.55
# Orderings asserted on seed 0, in mean mask IoU (name in measure.ORDERINGS → floor). Two references beat one on the
# two-look subjects: PerSAM on all of seeds 0-5 (+0.155 +0.002 +0.191 +0.143 +0.038 +0.175), PerSAM-F on 4
# (+0.100 +0.039 +0.137 −0.047 −0.074 +0.168); the floor guards the feature on seed 0 (+0.155 / +0.100; a second
# reference that were ignored would give 0). A negative raises PerSAM's mask IoU on every seed, by little (+0.003
# +0.010 +0.024 +0.007 +0.002 +0.031): its floor, -0.01, only keeps the rule that hurt (a negative point as well as
# the lowered prior: -0.020 on seed 0) from coming back. PerSAM-F on subjects with parts is not asserted: its
# margin straddles 0 over the seeds (docs/persam.md).
ASSERTED = {"two references (best) vs one, two-look subjects": 0.05, "PerSAM-F two references vs one": 0.05,
            "with a negative vs without, look-alike photos": -0.01}


def test_synthetic_perseg_is_deterministic_with_exact_masks():
    subjects = world.perseg(0)
    again = world.perseg(0)[3]
    assert len(subjects) == world.SUBJECTS >= 10
    assert all(np.array_equal(a.image, b.image) and np.array_equal(a.mask, b.mask)
               for a, b in zip(subjects[3].photos, again.photos))
    assert [s.index for s in subjects if s.has_parts] == list(world.PARTS)
    assert [s.index for s in subjects if s.second_look is not None] == list(world.TWO_LOOKS)
    for subject in subjects:
        for i, photo in enumerate(subject.photos + subject.sequence):
            assert photo.mask.sum() > 200 and not (photo.mask & photo.distractor).any()
        assert [bool(p.distractor.any()) for p in subject.photos[:4]] == [i in world.DISTRACTOR_PHOTOS for i in range(4)]
    # exact: the subject painted alone onto a blank canvas covers exactly its mask where nothing was painted later
    canvas = np.zeros((world.SIZE, world.SIZE, 3))
    painted = world.paint_object(canvas, subjects[0].spec, (64, 64), 40, 0.3)
    assert painted.whole.any() and (np.abs(canvas).sum(-1)[painted.whole] > 0).all() and not canvas[~painted.whole].any()


def test_loader_reads_the_miniature_sizes():
    sam = measure.load_miniature()
    config = json.loads(LOG.read_text())["config"]
    encoder = sam.image_encoder
    assert encoder.img_size == config["img_size"] and len(encoder.blocks) == config["encoder_depth"]
    assert encoder.patch_embed.proj.kernel_size == (config["patch_size"],) * 2
    assert [i for i, b in enumerate(encoder.blocks) if b.window_size == 0] == config["encoder_global_attn_indexes"]
    assert sam.mask_decoder.transformer.layers[0].self_attn.num_heads == config["decoder_num_heads"]
    assert measure.WEIGHTS.stat().st_size < 5_000_000


def test_training_first_steps_reproduce():
    """The committed log's first two steps (the loss at the random initialisation, and after one update)
    re-computed by the script's own functions: a changed world, recipe, architecture or seed moves them far more."""
    log = json.loads(LOG.read_text())
    threads = torch.get_num_threads()
    torch.set_num_threads(min(threads, 2))
    try:
        sam, head = train.build_miniature(), train.appearance_head()
        sam.train()
        optimiser = train.make_optimiser(sam, head)
        for step, loss, *rounds in log["first_steps"][:2]:
            got, got_rounds = train.train_step(sam, head, optimiser, step, log["steps"], appearance_weight=log["appearance"])
            assert got == pytest.approx(loss, rel=STEP_TOLERANCE), (step, got, loss)
            assert np.allclose(got_rounds, rounds, rtol=STEP_TOLERANCE)
    finally:
        torch.set_num_threads(threads)


def test_miniature_segments_from_one_point_and_a_box():
    """The committed miniature follows its prompts: on held-out objects its mask from one ground-truth point and
    from the object's box beat the box itself as the mask (a SAM that ignores its prompts and draws every object,
    like the 250-step weights, scored 0.33 against 0.59)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(min(threads, 2))
    try:
        quality = measure.sam_quality(measure.load_miniature(), scenes=SCENES, first=FIRST_SCENE)
    finally:
        torch.set_num_threads(threads)
    assert quality["objects"] >= 20
    assert quality["point"] >= POINT_IOU_FLOOR and quality["point"] > quality["box_as_mask"] + MARGIN, quality
    assert quality["box"] > quality["box_as_mask"] + MARGIN, quality


def test_persam_table_orderings_on_the_miniature():
    """PerSAM on the held-out photos of synthetic PerSeg seed 0 (``measure.persam_table`` without the video carry):
    one-shot PerSAM beats the best constant mask (chosen knowing the answers) by a margin and its positive point
    lands on the subject far more often than a random point; and each ordering of ``ASSERTED`` holds in mean mask
    IoU on seed 0 by at least its floor (see ``ASSERTED``: it guards the feature on this seed; over seeds 0-5 the
    PerSAM-F ordering holds on 4 of 6, bench/persam_quality.py)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(min(threads, 2))
    try:
        table = measure.persam_table(measure.load_miniature(), world.perseg(TEST_PERSEG_SEED), video=False)
    finally:
        torch.set_num_threads(threads)
    one = table["one/persam"]
    assert one.mean_iou >= PERSAM_IOU_FLOOR and one.mean_iou > one.baseline_iou + 3 * MARGIN, one
    assert one.on_subject > one.baseline_on_subject + 0.5, one
    orderings = {name: (better, worse) for name, better, worse in measure.ORDERINGS}
    margins = {name: measure.difference(table, *orderings[name]) for name in ASSERTED}
    assert all(margins[name] >= floor for name, floor in ASSERTED.items()), (margins, ASSERTED)
