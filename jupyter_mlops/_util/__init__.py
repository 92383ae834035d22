"""Small helpers shared across the package: URL redaction, process control, JSON values,
records as dicts (``records``) and results shown as their text (``reprs``).

Standard library only, so any module (core, serving, faces) may import them cheaply.
"""
