"""Point prompts for an image batch: one KJNodes list for every image, or one list per image."""

from .tasks import parse_points, read_points_json


def parse_batch_points(points, width: int, height: int, batch: int) -> list:
    """``points`` → ``batch`` lists of pixel (x, y) pairs, each checked by ``parse_points``.

    Accepts a KJNodes Points Editor list (``[{"x": 120, "y": 80}, …]``), used for every image, or a list of
    such lists, one per image of the batch (``[[{"x": 1, "y": 2}], [{"x": 5, "y": 6}], …]``, as PerSAM
    Segment emits); a list holding a single list also applies to every image.
    """
    if isinstance(points, str):
        points = read_points_json(points, '[{"x": 10, "y": 20}, ...] or one such list per image')
    if not is_per_image(points):
        return [parse_points(points, width, height)] * batch
    if len(points) == 1:
        return [parse_points(points[0], width, height)] * batch
    if len(points) != batch:
        raise ValueError(
            f"points: {len(points)} point lists for a batch of {batch} images; give one list per image, "
            "or a single list for every image"
        )
    parsed = []
    for i, image_points in enumerate(points):
        try:
            parsed.append(parse_points(image_points, width, height))
        except ValueError as e:
            raise ValueError(f"points of image {i}: {e}") from None
    return parsed


def points_for_batch(points, batch: int) -> list:
    """``points`` as one list of (x, y) for every image, or one list per image → a list of ``batch`` lists."""
    points = list(points or [])
    per_image = bool(points) and all(isinstance(p, (list, tuple)) and all(isinstance(q, (list, tuple)) for q in p) for p in points)
    if not per_image:
        return [points] * batch
    if len(points) == 1:
        return [list(points[0])] * batch
    if len(points) != batch:
        raise ValueError(f"points: {len(points)} point lists for a batch of {batch} images; give one list per image, or one list for all")
    return [list(p) for p in points]


def is_per_image(points) -> bool:
    """A non-empty list whose items are all lists of points (dicts or pairs), not a list of points."""
    return (
        isinstance(points, list)
        and bool(points)
        and all(isinstance(p, list) and all(isinstance(q, (dict, list)) for q in p) for p in points)
    )
