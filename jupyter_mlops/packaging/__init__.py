"""Packaging a registered model to run elsewhere: a Docker build context (``docker``)."""

from jupyter_mlops.packaging.docker import Package, package

__all__ = ["Package", "package"]
