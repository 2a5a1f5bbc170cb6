"""Prefect flows: thin wiring of `pipeline/` (what to compute) and `warehouse/` (where it is stored).

Importing this package changes nothing in the process: the processes Scorehouse starts call
`flows._environment.apply_defaults()` themselves, before Prefect is imported.
"""
