"""The pipeline's stages as plain functions: each takes its input records and a `Runtime`, and
returns its own record (`core.contracts`).

Engine choice, fallbacks and writing into the library live here; the Dagster assets only call a
stage and turn its record into event metadata. A stage raises `DubbingError` (never a Dagster
type) with a message for the user; the asset layer shows it as the step's failure.
"""
