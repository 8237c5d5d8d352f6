"""The templates' example pictures, drawn by seeded code (rerunning rewrites the same files):

- DICEPTION 5's built-in example set "highlight the red objects" (workflows/images/diception_examples/red_objects):
  the 48 training scenes of ``scripts/miniature_diception/new_task.py`` (scenes of the miniature DICEPTION's world
  with a red object, images/NN.png) and, as the answer, the red objects in white on black (targets/NN.png): what
  bench/diception_few_shot.py trains on. DICEPTION 5's photo (workflows/images/example_red_scene.png) is the first
  held-out scene of that task.
- The DICEPTION templates' photo (workflows/images/example_scene.png): a held-out scene of the miniature DICEPTION's
  world (``scripts/miniature_diception/world.py``) at the miniature's 128 × 128, and the point (on its largest
  object) and class that DICEPTION 3 and 4 ask for (``diception_point``, ``diception_category``).
- PerSAM 2's reference (workflows/images/example_scene_reference.png): another held-out scene of that world whose blue
  box looks like the example scene's, the box painted as the mask (``PERSAM_2_REFERENCE``): PerSAM finds the box in
  example_scene.png and its point drives the miniature DICEPTION's point segmentation.
- The PerSAM templates' other pictures (workflows/images/example_*.png except example_scene*.png): photos of one subject
  of the synthetic PerSeg (``scripts/miniature_sam/world.py``, ``perseg(0)``), the world the miniature SAM was
  trained and measured on, at its native 128 × 128, with exact masks. A mask is stored as ComfyUI's mask editor
  stores it: in the alpha channel, transparent where the mask is (Load Image's MASK is 1 − alpha).

    python scripts/make_example_set.py
"""

import sys
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from scripts.miniature_sam import world  # noqa: E402

IMAGES = ROOT / "workflows" / "images"
FOLDER = IMAGES / "diception_examples" / "red_objects"
RED_OBJECTS_COUNT = 48

# The PerSAM subject: a two-look subject of perseg(0) (photos 0-3 show look 1, photos 4-7 look 2; photos 2, 3, 6, 7
# also show its look-alike, the same object with one colour changed). Chosen where the miniature finds it in the
# templates' photos; on average over the synthetic PerSeg PerSAM scores far less (docs/persam.md, quality).
PERSEG_SEED, SUBJECT = 0, 9
CLASS_SUBJECT = 6  # the DreamBooth class image: another "toy" of the same set
PERSAM_PICTURES = {  # file → (subject, photo, what it shows, which mask goes into its alpha channel: None, "subject", "look-alike")
    "example_reference.png": (SUBJECT, 0, "the reference: look 1, its mask painted", "subject"),
    "example_photo.png": (SUBJECT, 1, "a new photo of look 1", None),
    "example_reference_2.png": (SUBJECT, 4, "a second reference: look 2, no mask (PerSAM 4 gives its box)", None),
    "example_second_look.png": (SUBJECT, 7, "a photo of look 2 beside the look-alike", None),
    "example_negative.png": (SUBJECT, 2, "a photo with the look-alike, the look-alike painted as the mask", "look-alike"),
    "example_class.png": (CLASS_SUBJECT, 0, "another toy: a DreamBooth class image", None),
}


def red_objects() -> None:
    from scripts.miniature_diception import new_task

    images, targets = new_task.examples(RED_OBJECTS_COUNT, new_task.FIRST_TRAIN)
    for role, batch in (("images", images), ("targets", targets)):
        folder = FOLDER / role
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.glob("*.png"):  # the set is rewritten whole
            old.unlink()
        for i, picture in enumerate(batch):
            Image.fromarray((picture.numpy() * 255).round().astype(np.uint8)).save(folder / f"{i:02}.png")
    photo, _ = new_task.examples(1, new_task.FIRST_HELD_OUT)
    Image.fromarray((photo[0].numpy() * 255).round().astype(np.uint8)).save(IMAGES / "example_red_scene.png")
    print(FOLDER.relative_to(ROOT), IMAGES.relative_to(ROOT) / "example_red_scene.png")


@lru_cache(maxsize=1)
def perseg_subjects() -> list:
    return world.perseg(PERSEG_SEED)


def persam_photo(name: str) -> world.Photo:
    """The synthetic photo (image, exact masks) that the PerSAM example picture ``name`` shows."""
    subject, photo, _, _ = PERSAM_PICTURES[name]
    return perseg_subjects()[subject].photos[photo]


def with_mask(image: np.ndarray, mask: np.ndarray) -> Image.Image:
    """RGBA as ComfyUI's mask editor saves a masked image: alpha 0 on the mask."""
    return Image.fromarray(np.dstack([image, np.where(mask, 0, 255).astype(np.uint8)]), "RGBA")


def box_line(mask: np.ndarray) -> str:
    """'x0, y0, x1, y1': the mask's bounding box in pixels (PerSAM Reference's ``box`` line)."""
    ys, xs = np.nonzero(mask)
    return f"{xs.min()}, {ys.min()}, {xs.max()}, {ys.max()}"


def second_reference_box() -> str:
    """The box of the subject in example_reference_2.png (PerSAM 4 gives that reference by its box)."""
    return box_line(persam_photo("example_reference_2.png").mask)


def persam_pictures() -> None:
    for name, (_, _, _, alpha) in PERSAM_PICTURES.items():
        photo = persam_photo(name)
        picture = Image.fromarray(photo.image) if alpha is None else with_mask(
            photo.image, photo.mask if alpha == "subject" else photo.distractor)
        picture.save(IMAGES / name)
        print((IMAGES / name).relative_to(ROOT))


DICEPTION_SCENE_SEED = 1_000_002  # a held-out scene (world.HELD_OUT_SEEDS): four objects, all three classes


@lru_cache(maxsize=1)
def diception_scene():
    from scripts.miniature_diception.world import scene

    return scene(DICEPTION_SCENE_SEED, 128)


def diception_largest():
    return max(diception_scene().objects, key=lambda o: o["area"])


def diception_point() -> tuple:
    """A pixel (x, y) inside the example scene's largest object, away from its edge."""
    from scripts.miniature_diception.targets import point_in

    x, y = point_in(diception_scene(), diception_largest()["id"], np.random.default_rng(0))
    return int(x), int(y)


def diception_category() -> str:
    """The COCO class of the example scene's largest object (DICEPTION 4's semantic segmentation)."""
    return diception_largest()["category"]


def diception_example() -> None:
    Image.fromarray(diception_scene().rgb).save(IMAGES / "example_scene.png")


# PerSAM 2's reference: (held-out scene, object id) — a blue box like the example scene's. Chosen among the 52 same-shape,
# same-colour objects of held-out scenes 1 000 010-1 000 199 as one whose PerSAM point lands on the example scene's
# box (mask IoU 0.85 on the miniature SAM; the miniature DICEPTION's mask from that point 0.93); spheres did not.
PERSAM_2_REFERENCE = (1_000_026, 1)


def persam_2_reference():
    """PerSAM 2's reference picture as a world scene and the painted subject's mask."""
    from scripts.miniature_diception.world import scene

    seed, object_id = PERSAM_2_REFERENCE
    reference = scene(seed, 128)
    return reference, reference.instance == object_id


def persam_2_example() -> None:
    reference, mask = persam_2_reference()
    with_mask(reference.rgb, mask).save(IMAGES / "example_scene_reference.png")


def main() -> int:
    diception_example()
    persam_2_example()
    red_objects()
    persam_pictures()
    return 0


if __name__ == "__main__":
    sys.exit(main())
