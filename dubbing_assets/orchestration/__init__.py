"""Orchestration layer: the Dagster code (assets, sensor, resources, IO manager).

Thin by design: each asset body reads inputs, calls the core, returns a
result with metadata. No ffmpeg command lines and no model code here.
"""
