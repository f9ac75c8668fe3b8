"""Shared plumbing of tfprune's small value objects and their registries.

Criteria, granularities, schedules and regularizers are each a *family* of
tiny classes whose whole state is their config. Every family has one
:class:`Registry`, so ``tfprune.<family>.get(identifier)`` accepts the same
things everywhere:

* a registered name, case-insensitive, with ``_``/``-``/spaces ignored (so
  ``"one_shot"``, ``"oneshot"`` and the class name ``"OneShot"`` agree), or
  any alias it was registered with;
* an instance of the family (returned as is) or one of its classes;
* a config dict as Keras serialises it (``{"class_name": ..., "config":
  ...}``), or ``{"kind": name, **arguments}``.

Unknown names raise a ``ValueError`` naming the family, the value, the known
names and the closest match.

>>> reg = Registry("pruning widget", "widgets")
>>> @reg.register("round_widget", "disc")
... class RoundWidget(ConfigObject):
...     def __init__(self, size=1):
...         self.size = size
...     def get_config(self):
...         return {"size": self.size}
>>> reg.get("RoundWidget"), reg.get({"kind": "disc", "size": 3})
(RoundWidget(size=1), RoundWidget(size=3))
>>> reg.get("round_widjet")
Traceback (most recent call last):
...
ValueError: Unknown pruning widget 'round_widjet'. Did you mean 'round_widget'? Known widgets: disc, round_widget.
"""

import inspect
import re

import keras

from tfprune._checks import did_you_mean

__all__ = ["ConfigObject", "Registry"]


class ConfigObject:
    """Value semantics from ``get_config``: equal configs, equal objects."""

    def get_config(self):
        return {}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __eq__(self, other):
        return type(self) is type(other) and self.get_config() == other.get_config()

    def __hash__(self):
        # Consistent with __eq__ (equal objects share a type) and never fails,
        # even for objects whose config is not serialisable.
        return hash(type(self).__name__)

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


def _key(name):
    # "one_shot", "One-Shot", "oneshot" and "OneShot" are one name.
    return re.sub(r"[\s_\-]", "", str(name).lower())


def _required_args(cls):
    try:
        params = inspect.signature(cls).parameters.values()
    except (TypeError, ValueError):
        return []
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return [p.name for p in params if p.kind in kinds and p.default is inspect.Parameter.empty]


class Registry:
    """Name -> class registry of one family, and its ``get(identifier)``.

    Args:
        kind: the family in messages, e.g. ``"pruning criterion"``.
        plural: its plural, e.g. ``"criteria"`` (``"Known criteria: ..."``).
        base: the family's base class (instances are returned as is); may be
            set after construction, before the first ``get``.
        unknown: message for an unknown name, with ``{kind}`` and ``{name}``
            fields; the did-you-mean hint and the known names follow it.
        footer: appended to the unknown-name message (e.g. shorthands).
        accepts: what else ``get`` accepts, for the wrong-type message.
        wrong_type: exception class for identifiers of the wrong type.
    """

    def __init__(self, kind, plural, base=None, *, unknown="Unknown {kind} '{name}'.",
                 footer="", accepts="", wrong_type=TypeError):
        self.kind, self.plural, self.base = kind, plural, base
        self.unknown, self.footer = unknown, footer
        self.accepts, self.wrong_type = accepts, wrong_type
        #: registered name or alias (lower case) -> class
        self.classes = {}
        self._lookup = {}
        self._parsers = []

    def register(self, name, *aliases):
        """Class decorator adding a class under ``name`` (and ``aliases``).

        The class also becomes Keras serialisable (package ``"tfprune"``),
        and its ``registered_name`` is ``name``.
        """

        def wrap(cls):
            for n in (name, *aliases):
                self.classes[n.lower()] = cls
                self._lookup[_key(n)] = cls
            self._lookup.setdefault(_key(cls.__name__), cls)
            cls.registered_name = name
            return keras.saving.register_keras_serializable(package="tfprune")(cls)

        return wrap

    def add_parser(self, parser):
        """Adds ``parser(text) -> instance or None`` for shorthands like ``"2:4"``."""
        self._parsers.append(parser)
        return parser

    def names(self):
        """The registered names and aliases, sorted."""
        return sorted(self.classes)

    def lookup(self, name):
        """The class registered as ``name`` (or its class name), else ``None``."""
        return self._lookup.get(_key(name))

    def error(self, name):
        """The ``ValueError`` for an unknown ``name``, with a did-you-mean hint."""
        hint = did_you_mean(str(name).lower(), self.names(), n=1)
        return ValueError(f"{self.unknown.format(kind=self.kind, name=name)}{hint} "
                          f"Known {self.plural}: {', '.join(self.names())}.{self.footer}")

    def get(self, identifier):
        """Returns an instance from a name, an instance, a class or a config dict."""
        if self.base is not None and isinstance(identifier, self.base):
            return identifier
        if isinstance(identifier, type) and self.base is not None \
                and issubclass(identifier, self.base):
            return self._build(identifier, {}, identifier.__name__)
        if isinstance(identifier, str):
            return self._from_name(identifier)
        if isinstance(identifier, dict):
            return self._from_dict(identifier)
        accepts = f", {self.accepts}" if self.accepts else ""
        raise self.wrong_type(
            f"Could not interpret {self.kind} {identifier!r}: pass a name "
            f"({', '.join(self.names())}), a config dict{accepts}.")

    def _from_name(self, text):
        cls = self.lookup(text)
        if cls is not None:
            return self._build(cls, {}, text)
        for parser in self._parsers:
            result = parser(text)
            if result is not None:
                return result
        raise self.error(text)

    def _from_dict(self, config):
        if "class_name" in config:
            name, module = config["class_name"], config.get("module") or "tfprune"
            # Only tfprune's own classes are resolved here: a dict of another
            # library (keras.regularizers.L1...) goes to Keras unchanged.
            if isinstance(name, str) and str(module).startswith("tfprune"):
                cls = self.lookup(name.split(">")[-1])
                if cls is not None:
                    return cls.from_config(dict(config.get("config") or {}))
            return keras.saving.deserialize_keras_object(config)
        kind = config.get("kind", config.get("type"))
        if isinstance(kind, str):
            cls = self.lookup(kind)
            if cls is None:
                raise self.error(kind)
            args = {k: v for k, v in config.items() if k not in ("kind", "type")}
            return self._build(cls, args, kind)
        raise self.wrong_type(
            f"Could not interpret {self.kind} {config!r}: a config dict needs "
            "'class_name' and 'config' (as keras.saving.serialize_keras_object "
            "writes it), or 'kind' and the arguments.")

    def _build(self, cls, args, name):
        missing = [a for a in _required_args(cls) if a not in args]
        if missing:
            raise ValueError(
                f"{self.kind.capitalize()} '{name}' ({cls.__name__}) needs arguments: "
                f"{', '.join(missing)}. Pass {cls.__name__}(...), or "
                f"{{'kind': '{getattr(cls, 'registered_name', cls.__name__)}', "
                f"'{missing[0]}': ...}}.")
        return cls(**args)
