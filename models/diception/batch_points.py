"""Point prompts for an image batch: one KJNodes list for every image, or one list per image. The one normaliser
of points: the nodes' JSON text and the engine's Python lists go through ``parse_batch_points``."""

from ..inputs import InputError
from .tasks import parse_points, read_points_json


def parse_batch_points(points, width: int, height: int, batch: int) -> list:
    """``points`` → ``batch`` lists of pixel (x, y) pairs, each checked by ``parse_points``.

    Accepts JSON text or Python lists: a KJNodes Points Editor list (``[{"x": 120, "y": 80}, …]``, or (x, y)
    pairs), used for every image, or a list of such lists, one per image of the batch
    (``[[{"x": 1, "y": 2}], [{"x": 5, "y": 6}], …]``, as PerSAM Segment emits); a list holding a single list also
    applies to every image.
    """
    if isinstance(points, str):
        points = read_points_json(points, '[{"x": 10, "y": 20}, ...] or one such list per image')
    if not is_per_image(points):
        return [parse_points(points, width, height)] * batch
    if len(points) == 1:
        return [parse_points(points[0], width, height)] * batch
    if len(points) != batch:
        raise InputError(
            f"points: {len(points)} point lists for a batch of {batch} images; give one list per image, "
            "or a single list for every image"
        )
    parsed = []
    for i, image_points in enumerate(points):
        try:
            parsed.append(parse_points(image_points, width, height))
        except ValueError as e:
            raise InputError(f"points of image {i}: {e}") from None
    return parsed


def is_per_image(points) -> bool:
    """A non-empty list whose items are all lists of points (dicts or pairs), not a list of points."""
    return (
        isinstance(points, (list, tuple))
        and bool(points)
        and all(isinstance(p, (list, tuple)) and all(isinstance(q, (dict, list, tuple)) for q in p) for p in points)
    )
