"""Small helpers shared across the package: URL redaction, process control, JSON values.

Standard library only, so any module (core, serving, faces) may import them cheaply.
"""
