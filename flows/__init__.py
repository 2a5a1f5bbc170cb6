"""Prefect flows: thin wiring of `pipeline/` (what to compute) and `warehouse/` (where it is stored)."""

from flows import _environment

_environment.apply_defaults()
