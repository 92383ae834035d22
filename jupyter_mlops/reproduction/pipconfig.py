"""pip's package-index settings, handed to uv.

uv reads none of pip's configuration, so on a machine where pip is set up for a private
mirror, a local wheel folder or a constraints file, uv would go to PyPI alone and miss
(or pick other) versions. Fresh environments follow what pip would install here.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path


def _pip_config_files() -> list[Path]:
    """pip's configuration files, in pip's override order (later wins)."""
    if sys.platform == "darwin":
        system = [Path("/Library/Application Support/pip")]
    elif os.name == "nt":
        system = [Path(os.environ.get("PROGRAMDATA", "C:/ProgramData")) / "pip"]
    else:
        dirs = os.environ.get("XDG_CONFIG_DIRS") or "/etc/xdg"
        system = [Path(d) / "pip" for d in dirs.split(os.pathsep)] + [Path("/etc")]
    name = "pip.ini" if os.name == "nt" else "pip.conf"
    files = [folder / name for folder in system]
    env_file = os.environ.get("PIP_CONFIG_FILE")
    if not (env_file and Path(env_file).exists()):
        home = Path.home()
        user = Path(os.environ.get("XDG_CONFIG_HOME") or home / ".config") / "pip"
        if os.name == "nt":
            user = Path(os.environ.get("APPDATA", home)) / "pip"
        files += [home / (".pip" if os.name != "nt" else "pip") / name, user / name]
    files.append(Path(sys.prefix) / name)
    if env_file:
        files.append(Path(env_file))
    return files


def pip_settings() -> dict[str, list[str]]:
    """The package-index settings pip uses here: index-url, extra-index-url, find-links,
    constraint (its config files, sections global then install, then ``PIP_*``)."""
    import configparser

    keys = ("index-url", "extra-index-url", "find-links", "constraint")
    found: dict[str, list[str]] = {}
    for path in _pip_config_files():
        parser = configparser.RawConfigParser()
        try:
            parser.read(path, encoding="utf-8")
        except (configparser.Error, OSError, UnicodeDecodeError):
            continue
        for section in ("global", "install"):
            for key in keys:
                for spelled in (key, key.replace("-", "_")):
                    if parser.has_option(section, spelled):
                        found[key] = parser.get(section, spelled).split()
    for key in keys:
        value = os.environ.get("PIP_" + key.upper().replace("-", "_"))
        if value:
            found[key] = value.split()
    return found


def index_options() -> list[str]:
    """uv options that make it use the package indexes pip is configured with here
    (private mirrors, local wheel folders, constraints), unless uv has its own settings.

    With extra indexes, uv is told to pick the best version across all of them, as pip
    does (uv's default stops at the first index that knows a name).
    """
    own = ("UV_INDEX", "UV_DEFAULT_INDEX", "UV_INDEX_URL", "UV_EXTRA_INDEX_URL", "UV_FIND_LINKS")
    if any(os.environ.get(key) for key in own):
        return []
    settings = pip_settings()
    options: list[str] = []
    for url in settings.get("index-url", [])[:1]:
        options += ["--index-url", url]
    for url in settings.get("extra-index-url", []):
        options += ["--extra-index-url", url]
    if settings.get("extra-index-url"):
        options += ["--index-strategy", "unsafe-best-match"]
    for place in settings.get("find-links", []):
        options += ["--find-links", place]
    for path in settings.get("constraint", []):
        if Path(path).is_file():
            options += ["--constraint", path]
    return options
