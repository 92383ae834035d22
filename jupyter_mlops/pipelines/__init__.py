"""Notebooks as parameterised, reproducible steps (papermill)."""
