"""One validation layer for every node of the pack: the declared ``INPUT_TYPES`` enforced on every call.

ComfyUI checks only some of it, and not everywhere: the 2024-03 build validates ``required`` inputs only,
never optional ones, never NaN (``nan < min`` and ``nan > max`` are both false) nor the type of a BOOLEAN,
and API callers can bypass a frontend's widgets altogether. ``guard(node_class)`` wraps the class's
``FUNCTION`` once so that, before the node runs, each input it receives is checked against the class's
own ``INPUT_TYPES()`` (read at call time, so inputs added later are covered without further work):

- INT: an ``int`` (not a bool), within ``min``/``max``; FLOAT: a finite number (not a bool) within them;
  BOOLEAN: ``True``/``False``; STRING: a ``str``; a choice list: one of its entries;
- IMAGE / MASK: a tensor of the ComfyUI layout with only finite values (NaN would silently turn black).

An error is an ``InputError`` (a ``ValueError``; ``models.inputs``) naming the node, the input, what was expected and what came.
"""

import functools
import inspect
import math

import torch

from ..models.inputs import InputError, check_finite, check_images

CHOICES_SHOWN = 12
MASK_LAYOUT = "(batch, height, width)"


def _show(value) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _range(options: dict) -> str:
    low, high = options.get("min"), options.get("max")
    if low is not None and high is not None:
        return f" in [{low}, {high}]"
    if low is not None:
        return f" ≥ {low}"
    if high is not None:
        return f" ≤ {high}"
    return ""


def _choices(choices) -> str:
    shown = ", ".join(repr(c) for c in choices[:CHOICES_SHOWN])
    more = f", … ({len(choices)} in all)" if len(choices) > CHOICES_SHOWN else ""
    return f"[{shown}{more}]"


def check_value(name: str, kind, options: dict, value) -> None:
    """Raise ``InputError`` unless ``value`` fits the declaration ``(kind, options)`` of input ``name``."""
    if kind == "COMBO" and isinstance(options.get("options"), (list, tuple)):  # the newer way to declare a choice
        kind = options["options"]
    if isinstance(kind, (list, tuple)):
        choices = list(kind)
        if not any(value == c and type(value) is type(c) for c in choices):
            raise InputError(f"{name}: expected one of {_choices(choices)}, got {_show(value)}")
    elif kind == "INT":
        if not isinstance(value, int) or isinstance(value, bool):
            raise InputError(f"{name}: expected an integer{_range(options)}, got {_show(value)} ({type(value).__name__})")
        _check_range(name, options, value, "an integer")
    elif kind == "FLOAT":
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise InputError(f"{name}: expected a number{_range(options)}, got {_show(value)} ({type(value).__name__})")
        if not math.isfinite(value):
            raise InputError(f"{name}: expected a finite number{_range(options)}, got {value}")
        _check_range(name, options, value, "a number")
    elif kind == "BOOLEAN":
        if not isinstance(value, bool):
            raise InputError(f"{name}: expected true or false, got {_show(value)} ({type(value).__name__})")
    elif kind == "STRING":
        if not isinstance(value, str):
            raise InputError(f"{name}: expected a string, got {_show(value)} ({type(value).__name__})")
    elif kind in ("IMAGE", "MASK"):
        check_tensor(name, kind, value)


def _check_range(name, options, value, what) -> None:
    low, high = options.get("min"), options.get("max")
    if (low is not None and value < low) or (high is not None and value > high):
        raise InputError(f"{name}: expected {what}{_range(options)}, got {value}")


def check_tensor(name: str, kind: str, value) -> None:
    """An IMAGE (B, H, W, C) (the engine's own check, ``models.inputs.check_images``) or MASK ((B,) H, W) float
    tensor, non-empty, with finite values only."""
    if kind == "IMAGE":
        return check_images(name, value)
    if not isinstance(value, torch.Tensor):
        raise InputError(f"{name}: expected an {kind} tensor {MASK_LAYOUT}, got {type(value).__name__}")
    if value.ndim not in (2, 3) or 0 in value.shape:
        raise InputError(f"{name}: expected a non-empty {kind} {MASK_LAYOUT}, got shape {tuple(value.shape)}")
    check_finite(name, kind, value)


def check_inputs(node_class, kwargs: dict) -> None:
    """Check every input a node call receives against the node's ``INPUT_TYPES()``; a choice input that the node's
    ``VALIDATE_INPUTS`` takes (as in ComfyUI: e.g. a loader accepting a known file that is not listed yet) is checked
    by that instead of its list."""
    declared = node_class.INPUT_TYPES()
    as_list = getattr(node_class, "INPUT_IS_LIST", False)
    own = set(inspect.getfullargspec(node_class.VALIDATE_INPUTS).args) if hasattr(node_class, "VALIDATE_INPUTS") else set()
    if own:
        verdict = node_class.VALIDATE_INPUTS(**{k: v for k, v in kwargs.items() if k in own})
        if verdict is not True:
            raise InputError(str(verdict))
    for section in ("required", "optional"):
        for name, spec in declared.get(section, {}).items():
            if name not in kwargs:
                continue
            kind = spec[0]
            options = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
            values = kwargs[name] if as_list and isinstance(kwargs[name], list) else [kwargs[name]]
            for value in values:
                if value is None:
                    if section == "optional" and not _is_widget(kind):
                        continue  # an optional link left unconnected
                    raise InputError(f"{name}: expected {_expected(kind, options)}, got nothing (None)")
                if not (name in own and isinstance(kind, (list, tuple))):
                    check_value(name, kind, options, value)


def _is_widget(kind) -> bool:
    return isinstance(kind, (list, tuple)) or kind in ("INT", "FLOAT", "BOOLEAN", "STRING", "COMBO")


def _expected(kind, options) -> str:
    if isinstance(kind, (list, tuple)):
        return f"one of {_choices(list(kind))}"
    return {"INT": f"an integer{_range(options)}", "FLOAT": f"a finite number{_range(options)}",
            "BOOLEAN": "true or false", "STRING": "a string"}.get(kind, f"a {kind}")


def guard(node_class, title: str = ""):
    """Wrap ``node_class``'s FUNCTION so every call is checked first (idempotent); errors start with ``title``."""
    name = node_class.FUNCTION
    function = getattr(node_class, name)
    if getattr(function, "_checks_inputs", False):
        return node_class
    title = title or node_class.__name__

    @functools.wraps(function)
    def checked(self, *args, **kwargs):
        try:
            check_inputs(node_class, kwargs)
        except InputError as e:
            raise InputError(f"{title}: {e}") from None
        return function(self, *args, **kwargs)

    checked._checks_inputs = True
    setattr(node_class, name, checked)
    return node_class
