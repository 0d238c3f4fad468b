"""Dagster-free core: media, engines, crypto, mixing, library.

Nothing in this package may import dagster; a test enforces it.
"""
