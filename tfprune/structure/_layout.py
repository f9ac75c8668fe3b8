"""Channel layouts of tensors' last axes, shared by the dependency graph and its rules.

A layout is a :class:`Struct`: a sequence of :class:`Part` s, each made of
*channel spaces* (ids of the graph builder's union-find) with their lengths.
"""

import dataclasses

__all__ = ["Part", "Struct"]


@dataclasses.dataclass(frozen=True)
class Part:
    """``repeat`` copies of the ``segs`` spaces, each channel spanning ``inner`` positions.

    >>> p = Part(((0, 3), (1, 2)), repeat=4)
    >>> p.channels, p.size, p.shape()
    (5, 20, (4, 1, (3, 2)))
    """

    segs: tuple  # ((space id, length), ...)
    repeat: int = 1
    inner: int = 1

    @property
    def channels(self):
        return sum(n for _, n in self.segs)

    @property
    def size(self):
        return self.repeat * self.inner * self.channels

    def shape(self):
        return (self.repeat, self.inner, tuple(n for _, n in self.segs))


@dataclasses.dataclass(frozen=True)
class Struct:
    """Layout of a tensor's last axis: its :class:`Part` s one after the other
    (several only after concatenating flattened or depth-multiplied tensors).

    >>> s = Struct.of(((0, 8),), repeat=2)
    >>> s.repeat, s.size
    (2, 16)
    """

    parts: tuple

    @staticmethod
    def of(segs, repeat=1, inner=1):
        return Struct((Part(tuple(segs), repeat, inner),))

    @property
    def repeat(self):
        """Largest repeat: 1 means no part is flattened."""
        return max(p.repeat for p in self.parts)

    @property
    def size(self):
        return sum(p.size for p in self.parts)
