"""Point JSON of Perceive Task (``parse_points``, ``parse_batch_points``): no silent coercion, no raw Python errors.
The rules live here; the server tests send one bad point list (test_hostile_inputs.py) to prove the message reaches
the API client."""

import pytest

from models.diception import parse_batch_points, parse_points

BAD = {
    "bools": ('[{"x": true, "y": false}]', "points[0].x: expected a number of pixels, got True (bool)"),
    "huge integer": ('[{"x": 1' + "0" * 400 + ', "y": 2}]', "points[0].x: expected a pixel coordinate, got an integer of 401 digits"),
    "overflowing float": ('[{"x": 1e400, "y": 2}]', "points[0].x: expected a finite number of pixels, got inf"),
    "NaN": ('[{"x": 3, "y": NaN}]', "points[0].y: expected a finite number of pixels, got nan"),
    "-Infinity": ('[[-Infinity, 2]]', "points[0].x: expected a finite number of pixels, got -inf"),
    "numeric strings": ('[{"x": "3", "y": "4"}]', "points[0].x: expected a number of pixels, got '3' (str)"),
    "null": ('[{"x": null, "y": 4}]', "points[0].x: expected a number of pixels, got None"),
    "nested too deeply": ("[" * 100000 + "]" * 100000, "points: "),
    "a bare number": ("5", "points: expected a JSON list"),
    "too many before parsing": ("[" + ",".join(["1"] * 100000) + "]", "at most 5 points, got 100000"),
    "100000 pairs": ("[" + ",".join(["[1, 1]"] * 100000) + "]", "points: DICEPTION takes at most 5 points, got 100000"),
    "six points": (str([{"x": i, "y": i} for i in range(6)]).replace("'", '"'), "at most 5 points, got 6"),
    "missing y": ('[{"x": 3}]', 'points[0]: expected {"x": number, "y": number}'),
    "a triple": ("[[1, 2, 3]]", 'points[0]: expected {"x": number, "y": number}, got [1, 2, 3]'),
    "JSON null": ("null", "points: expected a JSON list"),
    "an integer from the API": (12, "points: expected a JSON list"),
    "negative": ('[{"x": -3, "y": 4}]', "points[0]: (-3, 4) lies outside the 64x48 image (x must be in [0, 63], y in [0, 47])"),
    "on the far edge": ('[{"x": 64, "y": 10}]', "outside the 64x48 image"),
    "broken JSON": ('[{"x": 1,', "points: not valid JSON"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_points_name_points_and_what_was_expected(case):
    text, message = BAD[case]
    with pytest.raises(ValueError) as e:
        parse_points(text, 64, 48)
    assert message in str(e.value), str(e.value)


@pytest.mark.parametrize("case", list(BAD))
def test_the_batch_reader_is_just_as_strict(case):
    """Perceive Task reads points through parse_batch_points: the same refusals, never a raw Python error."""
    text, message = BAD[case]
    with pytest.raises(ValueError) as e:
        parse_batch_points(text, 64, 48, 2)
    assert str(e.value).startswith("points"), str(e.value)
    assert message.split(": ", 1)[-1].split(";")[0] in str(e.value), str(e.value)


def test_good_points_still_parse():
    assert parse_points('[{"x": 3, "y": 4.5}, [63, 0]]', 64, 48) == [(3.0, 4.5), (63.0, 0.0)]
    assert parse_points({"x": 1, "y": 2}, 64, 48) == [(1.0, 2.0)]
