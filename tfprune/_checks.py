"""Argument validators shared by tfprune's constructors and functions.

Each validator returns the checked (converted) value, or raises an error
naming the object or function (``owner``), the argument (``name``), the
value it got and what is allowed: a ``TypeError`` when the value has the
wrong type, a ``ValueError`` when it is out of range.

>>> fraction("final_sparsity", 0.5, "PolynomialDecay")
0.5
>>> sparsity("target_sparsity", 1.0, "OneShot")
Traceback (most recent call last):
...
ValueError: OneShot: `target_sparsity` must be in [0, 1) (1.0 would remove every weight); got 1.0.
>>> integer("frequency", 10.0, "ConstantSparsity", minimum=1)
10
>>> one_of("scope", "globl", "tfprune.prune", ("layer", "global"))
Traceback (most recent call last):
...
ValueError: tfprune.prune: `scope` must be 'layer' or 'global'; got 'globl'. Did you mean 'global'?
"""

import difflib
import math

__all__ = ["number", "fraction", "sparsity", "integer", "at_least", "non_negative",
           "positive", "penalty_strength", "one_of"]


def number(name, value, owner, what="a number"):
    """``float(value)``, or a ``TypeError`` saying ``name`` must be ``what``."""
    if isinstance(value, bool):
        raise TypeError(f"{owner}: `{name}` must be {what}; got {value!r}.")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{owner}: `{name}` must be {what}; got {value!r}.") from None


def fraction(name, value, owner, interval="[0, 1)", note=""):
    """A number in ``interval``: ``"[0, 1)"``, ``"[0, 1]"``, ``"(0, 1)"`` or ``"(0, 1]"``.

    ``note`` (e.g. ``" (1.0 would remove every weight)"``) follows the
    interval in the range error.
    """
    value = number(name, value, owner, f"a number in {interval}")
    low_ok = value >= 0.0 if interval.startswith("[") else value > 0.0
    high_ok = value <= 1.0 if interval.endswith("]") else value < 1.0
    if math.isnan(value) or not (low_ok and high_ok):
        raise ValueError(f"{owner}: `{name}` must be in {interval}{note}; got {value}.")
    return value


def sparsity(name, value, owner):
    """A target sparsity: a number in ``[0, 1)`` (1.0 would prune everything)."""
    return fraction(name, value, owner, "[0, 1)", " (1.0 would remove every weight)")


def integer(name, value, owner, minimum=None):
    """An ``int`` (a float with an integer value is accepted), ``>= minimum``."""
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        else:
            raise TypeError(f"{owner}: `{name}` must be an integer; got {value!r}.")
    if minimum is not None and value < minimum:
        raise ValueError(f"{owner}: `{name}` must be >= {minimum}; got {value}.")
    return int(value)


def at_least(name, value, owner, minimum, strict=False, note=""):
    """A number ``>= minimum`` (``> minimum`` if ``strict``); NaN is refused."""
    op = ">" if strict else ">="
    value = number(name, value, owner, f"a number {op} {minimum:g}")
    if math.isnan(value) or value < minimum or (strict and value == minimum):
        raise ValueError(f"{owner}: `{name}` must be {op} {minimum:g}{note}; got {value:g}.")
    return value


def non_negative(name, value, owner, note=""):
    """A number ``>= 0``."""
    return at_least(name, value, owner, 0.0, note=note)


def positive(name, value, owner, note=""):
    """A number ``> 0``."""
    return at_least(name, value, owner, 0.0, strict=True, note=note)


def penalty_strength(name, value, owner):
    """A regularization strength (or threshold): a number ``>= 0``."""
    return at_least(name, value, owner, 0.0,
                    note=" (a negative penalty would reward large weights)")


def did_you_mean(name, known, n=3):
    """``" Did you mean 'a', 'b'?"`` for the known names closest to ``name``, or ``""``.

    The one place the hint is worded, for layer names, registry names and choices.

    >>> did_you_mean("dens", ["dense", "conv", "dense_1"])
    " Did you mean 'dense', 'dense_1'?"
    """
    close = difflib.get_close_matches(str(name), [str(k) for k in known], n=n)
    return f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""


def one_of(name, value, owner, choices):
    """``value`` if it is one of ``choices``, else a ``ValueError`` with a did-you-mean hint."""
    choices = tuple(choices)
    if any(value == c and type(value) is type(c) for c in choices):
        return value
    shown = [repr(c) for c in choices]
    allowed = " or ".join(shown) if len(shown) <= 2 else "one of " + ", ".join(shown)
    hint = ""
    if isinstance(value, str):
        hint = did_you_mean(value, [c for c in choices if isinstance(c, str)], n=1)
    raise ValueError(f"{owner}: `{name}` must be {allowed}; got {value!r}.{hint}")
