r"""An energy proxy for channel-pruned models: multiply-adds and bytes moved.

.. math:: E = e_{mac} \cdot \mathrm{MACs} + e_{byte} \cdot \mathrm{bytes}

per sample, in picojoules, where MACs are the multiply-adds of
``tfprune.structure.count`` and bytes are what one inference moves: every
weight read once, and the input read and output written once for every layer
with a kernel (Dense, Conv, DepthwiseConv), ``bytes_per_value`` each (4 for
float32). Traffic of other layers (BatchNorm, activations, pooling) and reuse
in caches are not modelled: it is a proxy to rank plans, not a measurement.

Default coefficients are Horowitz's 45 nm figures (ISSCC 2014, "Computing's
energy problem"): a 32-bit float multiply (3.7 pJ) plus add (0.9 pJ) is
4.6 pJ, and a 32-bit DRAM access is about 640 pJ, 160 pJ per byte. On a chip
where weights stay in SRAM (a 32-bit read of an 8 KB SRAM is about 5 pJ),
pass ``pj_per_byte=1.25``; for int8 models, ``bytes_per_value=1`` and the
int8 MAC figure (0.2 pJ + 0.03 pJ).

>>> e = EnergyModel()
>>> e.get_config()
{'pj_per_mac': 4.6, 'pj_per_byte': 160.0, 'bytes_per_value': 4}
>>> round(e.picojoules(macs=1000, values=10), 6)   # 4.6 * 1000 + 160 * 4 * 10
11000.0
>>> EnergyModel.get({"pj_per_byte": 1.25}).pj_per_byte
1.25
"""

import numbers

from tfprune._config import ConfigObject

__all__ = ["EnergyModel"]


class EnergyModel(ConfigObject):
    """Energy per multiply-add and per byte moved (see the module docstring).

    Args:
        pj_per_mac: picojoules per multiply-add.
        pj_per_byte: picojoules per byte read or written.
        bytes_per_value: bytes per weight or activation (4: float32).

    Example (a plan under an energy budget: ``report.allocate(target_energy=E,
    energy=EnergyModel(...))`` or ``energy={"pj_per_byte": 100.0}``):

    >>> e = EnergyModel(pj_per_byte=100.0)
    >>> e.picojoules(macs=1000, values=10)   # 4.6 * 1000 + 100 * 4 * 10
    8600.0
    """

    def __init__(self, pj_per_mac=4.6, pj_per_byte=160.0, bytes_per_value=4):
        for name, v in (("pj_per_mac", pj_per_mac), ("pj_per_byte", pj_per_byte),
                        ("bytes_per_value", bytes_per_value)):
            if isinstance(v, bool) or not isinstance(v, numbers.Real) or not v >= 0:
                raise ValueError(f"EnergyModel: {name} must be a number >= 0; got {v!r}.")
        self.pj_per_mac = float(pj_per_mac)
        self.pj_per_byte = float(pj_per_byte)
        self.bytes_per_value = int(bytes_per_value)

    def picojoules(self, macs, values):
        """:math:`E` for ``macs`` multiply-adds and ``values`` weights/activations moved."""
        return self.pj_per_mac * macs + self.pj_per_byte * self.bytes_per_value * values

    def get_config(self):
        return {"pj_per_mac": self.pj_per_mac, "pj_per_byte": self.pj_per_byte,
                "bytes_per_value": self.bytes_per_value}

    @classmethod
    def get(cls, identifier):
        """An :class:`EnergyModel` from None (defaults), a dict of coefficients, or itself."""
        if identifier is None:
            return cls()
        if isinstance(identifier, cls):
            return identifier
        if isinstance(identifier, dict):
            unknown = sorted(set(identifier) - {"pj_per_mac", "pj_per_byte", "bytes_per_value"})
            if unknown:
                raise ValueError(f"EnergyModel: unknown coefficient(s) {unknown}; expected "
                                 "pj_per_mac, pj_per_byte, bytes_per_value.")
            return cls(**identifier)
        if all(hasattr(identifier, k) for k in ("pj_per_mac", "pj_per_byte")):
            return cls(identifier.pj_per_mac, identifier.pj_per_byte,
                       getattr(identifier, "bytes_per_value", 4))
        raise TypeError(f"energy must be an EnergyModel, a dict of its coefficients or None; "
                        f"got {type(identifier).__name__}.")
