"""How a model is named: ``name``, ``name/version``, ``name@alias`` or a ``models:/`` URI.

One ``ModelRef`` serves the registry (which version to register, promote or trace) and the
model server (which model a deployment serves, pinned to a version at deploy time). The
model server imports this module in its own process, so it imports nothing heavy.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from jupyter_mlops import values
from jupyter_mlops.errors import RegistryError

MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,254}$")
ALIAS_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,254}$")
# Alias moves of one model are serialised by a lock: a registered model whose name holds
# this infix (see registry.lock). No user model may be named like one.
LOCK_INFIX = ".mlops-lock."


def check_model_name(name: str) -> str:
    """``name`` if it is a valid registered-model name, else ``RegistryError``."""
    if not name or not MODEL_NAME.match(name) or LOCK_INFIX in name:
        raise RegistryError(
            f"Invalid model name {name!r}: use letters, digits, '_', '.' or '-' "
            "(it must not contain '/' or '@', which separate versions and aliases)"
        )
    return name


def check_alias(alias: str) -> str:
    """``alias`` if it is a valid alias, else ``RegistryError``."""
    if not ALIAS_NAME.match(alias) or alias.lower() == "latest" or re.fullmatch(r"[vV]\d+", alias):
        raise RegistryError(
            f"Invalid alias {alias!r}: start with a letter or '_', then letters, digits, "
            "'_' or '-'; 'latest' and 'v<number>' are reserved by MLflow"
        )
    return alias


def is_lock_model(name: str) -> bool:
    """True for the transient registered models that serialise alias moves."""
    return LOCK_INFIX in name


def expectation(text: str | None) -> dict[str, Any]:
    """``--expect VERSION`` as ``promote``'s keyword: ``none`` means the alias must be
    unset; no text means "the holder when the call starts" (the default)."""
    if text is None:
        return {}
    text = text.strip().strip("'\"")
    return {"expected": None if text.lower() == "none" else values.version_number(text)}


@dataclass(frozen=True)
class ModelRef:
    """A model by name, version or alias; once resolved for serving, pinned to a version.

    ``uri`` is what MLflow loads: derived from name, alias and version when not given
    (``models:/name@alias``, ``models:/name/3``, ``models:/name``). A deployment's reference
    carries the version its alias pointed at when it was deployed (``uri`` then names that
    version), the ``target`` it was asked for, the run, the local ``source`` folder and an
    input ``example`` for the curl hint.
    """

    name: str
    version: str | None = None
    alias: str | None = None
    run_id: str | None = None
    uri: str = ""
    target: str | None = None
    source: str | None = None
    example: dict[str, Any] | None = field(default=None, compare=False)
    # False: the model has no signature, so a server cannot check its inputs (None: unknown)
    signature: bool | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if not self.uri:
            if self.alias:
                uri = f"models:/{self.name}@{self.alias}"
            elif self.version:
                uri = f"models:/{self.name}/{self.version}"
            else:
                uri = f"models:/{self.name}"
            object.__setattr__(self, "uri", uri)

    @classmethod
    def parse(cls, text: str) -> ModelRef:
        """``name``, ``name/3`` or ``name@alias`` (optionally ``models:/``-prefixed), checked."""
        raw = text.removeprefix("models:/").strip()
        if "@" in raw:
            name, alias = raw.split("@", 1)
            return cls(check_model_name(name), alias=check_alias(alias))
        if "/" in raw:
            name, version = raw.split("/", 1)
            if not re.fullmatch(r"[0-9]{1,10}", version) or int(version) > values.MAX_VERSION:
                raise RegistryError(f"Invalid version {version!r} in {text!r}: use name/3")
            return cls(check_model_name(name), version=version)
        return cls(check_model_name(raw))

    @property
    def label(self) -> str:
        """``name v3`` for registered versions, else the name (or the URI)."""
        if self.name and self.version:
            return f"{self.name} v{self.version}"
        return self.name or self.uri

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelRef:
        """The reference ``to_dict`` wrote (unknown keys ignored)."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def __str__(self) -> str:
        return self.uri.removeprefix("models:/")
