"""Compatibility layers for code migrating from other pruning libraries."""

from tfprune.compat import tfmot

__all__ = ["tfmot"]
