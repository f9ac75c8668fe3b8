"""Shared plumbing of tfprune's small value objects (schedules, criteria, granularities).

Each family is a registry of tiny classes whose whole state is their config:
equality, hashing and ``repr`` all come from ``get_config``.
"""

import keras

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


class Registry:
    """Name -> class registry whose ``register`` also makes classes Keras serialisables."""

    def __init__(self, kind):
        self.kind = kind
        self.classes = {}

    def register(self, name, *aliases):
        """Class decorator adding a class under ``name`` (and ``aliases``)."""

        def wrap(cls):
            for n in (name, *aliases):
                self.classes[n.lower()] = cls
            cls.registered_name = name
            return keras.saving.register_keras_serializable(package="tfprune")(cls)

        return wrap

    def names(self):
        """The registered names, sorted."""
        return sorted(self.classes)
