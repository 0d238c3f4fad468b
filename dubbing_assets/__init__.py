"""dubbing_assets: a Dagster code location that dubs TV series and animation episodes.

Importing this package must stay cheap and side-effect free: models, keys and
settings are resolved at run time by resources, never at import.
"""

__version__ = "0.1.0"
