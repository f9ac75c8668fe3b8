"""The graph builder behind :func:`tfprune.structure.graph`: union-find over channel spaces.

Rules (:mod:`tfprune.structure._rules`) call it to create channel spaces, tie
them together, record which weight slices they index and block them with a
reason.
"""

import numpy as np

from tfprune.structure._layout import Struct

__all__ = ["Builder", "last_dim"]


class Builder:
    """Union-find over channel spaces plus the members each space collects."""

    def __init__(self, refine=None):
        self.parent, self.length, self.members, self.reasons = [], [], [], []
        self.blocks = []  # per space: how many equal blocks it was cut into
        self.structs, self.skipped, self.zero_maps = {}, {}, {}
        # Grouped layers (Conv groups, GroupNormalization) need a space cut into
        # equal blocks: channel j of the space is position j of every block.
        # A first pass collects their requests, a second pass (final) creates
        # those spaces already cut, keyed by the call that makes them.
        self.refine = refine or {}
        self.final = refine is not None
        self.requests, self.origin, self.at, self._made = [], [], None, 0

    def enter(self, path):
        """The call whose spaces :meth:`fresh` creates next (origin of a refinement)."""
        self.at, self._made = path, 0

    # -- spaces ----------------------------------------------------------
    def fresh(self, length, reason=None):
        sid = len(self.parent)
        origin = (self.at, self._made)
        self._made += 1
        blocks = self.refine.get(origin, 1)
        n = int(length) // blocks if blocks > 1 and int(length) % blocks == 0 else int(length)
        self.parent.append(sid)
        self.origin.append(origin)
        self.length.append(n)
        self.blocks.append(int(length) // n)
        self.members.append([])
        self.reasons.append([reason] if reason else [])
        return Struct.of(((sid, n),), repeat=int(length) // n)

    def request(self, struct, blocks):
        """Asks for ``struct``'s space to be cut into ``blocks`` equal blocks (first pass).

        True if ``struct`` is already cut that way (or a multiple of it). False
        if it cannot be: it is not one plain space, or this is the final pass.
        """
        if len(struct.parts) != 1 or len(struct.parts[0].segs) != 1 \
                or struct.parts[0].inner != 1:
            return False
        part = struct.parts[0]
        if part.repeat > 1:
            return part.repeat % blocks == 0
        if not self.final:
            self.requests.append((part.segs[0][0], int(blocks)))
        return False

    def refinements(self):
        """``{origin: blocks}`` for the second pass: every space of a requested class."""
        need = {}
        for sid, blocks in self.requests:
            r = self.find(sid)
            need[r] = np.lcm(need.get(r, 1), blocks)
        return {self.origin[s]: int(need[self.find(s)]) for s in range(len(self.parent))
                if self.find(s) in need}

    def find(self, s):
        while self.parent[s] != s:
            self.parent[s] = self.parent[self.parent[s]]
            s = self.parent[s]
        return s

    def union(self, a, b):
        """Unifies two layouts channel by channel; False if they differ."""
        if [p.shape() for p in a.parts] != [p.shape() for p in b.parts]:
            return False
        pairs = [(x, y) for pa, pb in zip(a.parts, b.parts) for x, y in zip(pa.segs, pb.segs)]
        for (sa, _), (sb, _) in pairs:
            ra, rb = self.find(sa), self.find(sb)
            if ra != rb:
                self.parent[rb] = ra
        return True

    def block(self, struct, reason):
        for part in struct.parts:
            for s, _ in part.segs:
                self.reasons[s].append(reason)

    # -- tensors and members ---------------------------------------------
    def get(self, key):
        return self.structs[key]

    def set(self, key, struct):
        self.structs[key] = struct

    def member(self, struct, call, key, axis, role, inner=1):
        """Adds the slices of ``struct``'s spaces along ``axis`` of weight ``key``."""
        base = 0
        for part in struct.parts:
            offset, stride = 0, part.channels * part.inner * inner if part.repeat > 1 else 0
            for s, n in part.segs:
                self.members[s].append((  # Member fields, made into Members by graph()
                    call.path, key, axis, offset, n, role, part.repeat, stride,
                    inner * part.inner, base))
                offset += n
            base += part.size

    def skip(self, call, reason):
        """Leaves every channel ``call`` touches unpruned, recording why."""
        self.skipped.setdefault(call.path, reason)
        text = f"{call.path}: {reason}"
        for k in call.inputs:
            if k in self.structs:
                self.block(self.structs[k], text)
        for k, shape in zip(call.outputs, call.out_shapes):
            self.set(k, self.fresh(last_dim(shape), text))


def last_dim(shape):
    return int(shape[-1]) if len(shape) > 1 and shape[-1] is not None else 1


