"""DICEPTION's tasks, their prompts, and the point prompts of point-prompted segmentation."""

import json
import math

from ..inputs import InputError
from ..points import MAX_POINTS

TASK_PROMPTS = {
    "depth": "[[image2depth]]",
    "normal": "[[image2normal]]",
    "point segmentation": "[[image2segmentation]]",
    "entity segmentation": "[[image2entity]]",
    "semantic segmentation": "[[image2semantic]]",
    "pose": "[[image2pose]]",
}
POINT_TASK = "point segmentation"
SEMANTIC_TASK = "semantic segmentation"

COCO_CATEGORIES = tuple(
    name.replace("_", " ")
    for name in (
        "person bicycle car motorcycle airplane bus train truck boat traffic_light fire_hydrant stop_sign "
        "parking_meter bench bird cat dog horse sheep cow elephant bear zebra giraffe backpack umbrella handbag "
        "tie suitcase frisbee skis snowboard sports_ball kite baseball_bat baseball_glove skateboard surfboard "
        "tennis_racket bottle wine_glass cup fork knife spoon bowl banana apple sandwich orange broccoli carrot "
        "hot_dog pizza donut cake chair couch potted_plant bed dining_table toilet tv laptop mouse remote "
        "keyboard cell_phone microwave oven toaster sink refrigerator book clock vase scissors teddy_bear "
        "hair_drier toothbrush"
    ).split()
)


def task_prompt(task: str, category: str = "") -> str:
    """The prompt DICEPTION was trained with for ``task`` (semantic segmentation names a COCO class)."""
    if task not in TASK_PROMPTS:
        raise InputError(f"task: unknown task {task!r}; expected one of {list(TASK_PROMPTS)}")
    if task == SEMANTIC_TASK:
        category = (category or "").strip()
        if not category:
            raise InputError("category: the semantic segmentation task needs a COCO category, e.g. 'dog'")
        return f"{TASK_PROMPTS[task]} {category}"
    return TASK_PROMPTS[task]


def read_points_json(text: str, expected: str = '[{"x": 10, "y": 20}, ...]'):
    """The JSON value of a ``points`` text ("" → []), with errors that name ``points`` and the expected form."""
    text = text.strip()
    if not text:
        return []
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise InputError(f"points: not valid JSON ({e.msg}); expected {expected}") from None
    except RecursionError:
        raise InputError(f"points: the JSON is nested too deeply; expected {expected}") from None


def parse_points(points, width: int, height: int) -> list:
    """Pixel points from the KJNodes Points Editor JSON (``[{"x": px, "y": px}, …]``) → [(x, y), …].

    Also accepts a list of such dicts or of ``[x, y]`` pairs. Checks there are at most 5, that each
    coordinate is a finite JSON number (not a bool, not a string) and that each point lies inside a
    ``width``×``height`` image.
    """
    if isinstance(points, str):
        points = read_points_json(points)
    if isinstance(points, dict):
        points = [points]
    if isinstance(points, tuple):
        points = list(points)
    if not isinstance(points, list):
        raise InputError(f'points: expected a JSON list like [{{"x": 10, "y": 20}}], got {type(points).__name__}')
    if len(points) > MAX_POINTS:
        raise InputError(f"points: DICEPTION takes at most {MAX_POINTS} points, got {len(points)}")
    parsed = []
    for i, p in enumerate(points):
        try:
            x, y = (p["x"], p["y"]) if isinstance(p, dict) else p
        except (KeyError, TypeError, ValueError):
            raise InputError(f'points[{i}]: expected {{"x": number, "y": number}}, got {_short(p)}') from None
        x, y = _coordinate(i, "x", x), _coordinate(i, "y", y)
        if not (0 <= x <= width - 1 and 0 <= y <= height - 1):
            raise InputError(
                f"points[{i}]: ({x:g}, {y:g}) lies outside the {width}x{height} image "
                f"(x must be in [0, {width - 1}], y in [0, {height - 1}])"
            )
        parsed.append((x, y))
    return parsed


def _coordinate(i: int, axis: str, value) -> float:
    """A point coordinate: a finite int/float of sane size (bools, strings, NaN, ±inf and 10**400 refused)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InputError(f"points[{i}].{axis}: expected a number of pixels, got {_short(value)} ({type(value).__name__})")
    if isinstance(value, int) and abs(value) > 2**53:
        raise InputError(f"points[{i}].{axis}: expected a pixel coordinate, got an integer of {len(str(abs(value)))} digits")
    if not math.isfinite(value):
        raise InputError(f"points[{i}].{axis}: expected a finite number of pixels, got {value}")
    return float(value)


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
