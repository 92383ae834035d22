"""The alias log: who moved which alias when, kept in MLflow tags the UI shows well.

MLflow keeps only where an alias points now. Every move is recorded, per alias, as tags:

* on the registered model, ``mlops.alias.<alias>``: one line for people ("v3 since
  2026-12-03 07:10 UTC, promote by alice (was v2) ...") and ``mlops.alias.<alias>.log``:
  the full log, a JSON list of events, oldest first, continued in ``.log.1``, ``.log.2``
  ... when it outgrows one tag value (``TAG_LIMIT``: what MLflow's registry stores keep);
* on each version the alias reached or left, ``mlops.alias.<alias>``: since when it holds
  the alias, or until when and to which version it moved.

So the model's page in the MLflow UI shows one line and one log per alias, not one JSON
tag per move. Projects written before this kept one ``mlops.history.*`` tag per move
(``LEGACY_PREFIX``): they are still read, merged with the logs, and never rewritten.
Writers hold the alias lock (``registry/lock.py``), so read-modify-write of one alias's
log is safe. Another client may write these tags too: an entry that is not an event (bad
JSON, a field missing) is left out of what is read, with a one-line note, and a damaged
part of a log is copied to ``mlops.alias.<alias>.damaged.<part>`` before the log is
rewritten, so nothing recorded is lost.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING, Any

from jupyter_mlops.tracking import store

if TYPE_CHECKING:
    from mlflow import MlflowClient

PREFIX = "mlops.alias."
LEGACY_PREFIX = "mlops.history."  # one JSON tag per move, before the per-alias log
TAG_LIMIT = 5000  # characters: registered-model tag values on MLflow's SQL stores
_ALWAYS = ("version", "previous")  # kept in the log even when None
_REQUIRED = ("model", "alias", "action", "time", "user")  # an entry without them is no event
_LOG_KEY = re.compile(r"^mlops\.alias\.(?P<alias>[A-Za-z0-9_-]+)\.log(?:\.(?P<part>\d+))?$")


@dataclass
class AliasEvent:
    """One alias change, as recorded in the alias log."""

    model: str
    alias: str
    version: str | None
    previous: str | None
    action: str  # register | promote | rollback
    time: str
    user: str
    notebook: str | None = None
    git_commit: str | None = None
    gate: dict[str, Any] | None = None
    comparison: dict[str, Any] | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AliasEvent:
        known = {f.name for f in fields(cls)}
        return cls(**{**dict.fromkeys(_ALWAYS), **{k: v for k, v in data.items() if k in known}})

    def to_dict(self) -> dict[str, Any]:
        """The event without its empty optional fields (the log stays short)."""
        return {k: v for k, v in asdict(self).items() if v is not None or k in _ALWAYS}


def log_key(alias: str, part: int = 0) -> str:
    """The tag holding part ``part`` of ``alias``'s log."""
    return f"{PREFIX}{alias}.log" + (f".{part}" if part else "")


def summary_key(alias: str) -> str:
    return f"{PREFIX}{alias}"


def _when(event: AliasEvent) -> str:
    return f"{event.time[:19].replace('T', ' ')} UTC"


def _detail(event: AliasEvent) -> str:
    parts = [f"was v{event.previous}" if event.previous else "new"]
    if event.gate and event.gate.get("expression"):
        parts.append(f"gate {event.gate['expression']}")
    if event.comparison and event.comparison.get("summary"):
        parts.append(str(event.comparison["summary"]))
    return "; ".join(parts)


def model_line(event: AliasEvent, moves: int) -> str:
    """The registered model's one line for people about ``event.alias``."""
    where = f"v{event.version} since" if event.version else "removed"
    line = f"{where} {_when(event)}, {event.action} by {event.user} ({_detail(event)})"
    return f"{line}; {moves} move{'s' * (moves != 1)} in {log_key(event.alias)}"[:TAG_LIMIT]


def holder_line(event: AliasEvent) -> str:
    """The line on the version ``event`` moved the alias to."""
    return f"{event.alias} since {_when(event)}, {event.action} by {event.user} ({_detail(event)})"


def left_line(event: AliasEvent) -> str:
    """The line on the version ``event`` moved the alias away from."""
    to = f"to v{event.version}" if event.version else "removed"
    return f"{event.alias} until {_when(event)}: {event.action} by {event.user}, {to}"


def _entry_problem(entry: Any) -> str | None:
    """Why ``entry`` of a log cannot be an :class:`AliasEvent`, or None."""
    if not isinstance(entry, dict):
        return f"a JSON {type(entry).__name__}, not an event object"
    missing = [k for k in _REQUIRED if not isinstance(entry.get(k), str)]
    if missing:
        return f"{', '.join(missing)} missing or not text"
    for key in _ALWAYS:
        if entry.get(key) is not None and not isinstance(entry[key], str | int):
            return f"{key} is a JSON {type(entry[key]).__name__}"
    return None


def parse_entries(key: str, text: str, skipped: list[str] | None = None) -> list[dict[str, Any]]:
    """The well-formed events (as dicts) of tag ``key``; each bad part (not JSON, not an
    event, a field missing) is left out and described in ``skipped``, one line each."""
    notes = skipped if skipped is not None else []
    try:
        data = json.loads(text)
    except ValueError as exc:
        notes.append(f"tag {key} is not valid JSON ({exc}): left out")
        return []
    items = data if isinstance(data, list) else [data]  # legacy tags hold one object
    entries = []
    for index, entry in enumerate(items):
        problem = _entry_problem(entry)
        if problem is None:
            entries.append(
                {**entry, **{k: str(entry[k]) for k in _ALWAYS if entry.get(k) is not None}}
            )
        else:
            where = f"entry {index + 1} of tag {key}" if isinstance(data, list) else f"tag {key}"
            notes.append(f"{where} is not an alias event ({problem}): left out")
    return entries


def read_events(tags: Mapping[str, str], skipped: list[str] | None = None) -> list[AliasEvent]:
    """Every alias move recorded in a registered model's ``tags``, oldest first: the
    per-alias logs and the ``mlops.history.*`` tags of older projects. A damaged entry is
    left out and described in ``skipped`` (the others are still read)."""
    parts: dict[str, dict[int, str]] = {}
    for key, value in tags.items():
        match = _LOG_KEY.match(key)
        if match:
            parts.setdefault(match["alias"], {})[int(match["part"] or 0)] = value
    entries: list[dict[str, Any]] = []
    for alias, chunks in parts.items():
        for index in sorted(chunks):
            entries += parse_entries(log_key(alias, index), chunks[index], skipped)
    for key in sorted(k for k in tags if k.startswith(LEGACY_PREFIX)):
        entries += parse_entries(key, tags[key], skipped)
    events = [AliasEvent.from_dict(d) for d in entries]
    events.sort(key=lambda e: e.time)
    return events


def _alias_log(tags: Mapping[str, str], alias: str) -> list[dict[str, Any]]:
    """The events (as dicts) of ``alias``'s log, without its legacy tags (nor its damaged
    entries, which :func:`_keep_damaged` sets aside before the log is rewritten)."""
    entries: list[dict[str, Any]] = []
    part = 0
    while log_key(alias, part) in tags:
        entries += parse_entries(log_key(alias, part), tags[log_key(alias, part)])
        part += 1
    return entries


def _keep_damaged(client: MlflowClient, name: str, alias: str, tags: Mapping[str, str]) -> None:
    """Copy each damaged part of ``alias``'s log to ``mlops.alias.<alias>.damaged.<part>``
    before the log is rewritten without it: nothing recorded is thrown away."""
    part = 0
    while log_key(alias, part) in tags:
        skipped: list[str] = []
        text = tags[log_key(alias, part)]
        parse_entries(log_key(alias, part), text, skipped)
        if skipped:
            key = f"{PREFIX}{alias}.damaged.{part}"
            store.call(client.set_registered_model_tag, name, key, text[:TAG_LIMIT])
        part += 1


def _packed(entries: Sequence[dict[str, Any]]) -> list[str]:
    """``entries`` as JSON lists, each at most ``TAG_LIMIT`` characters, in order."""
    chunks: list[str] = []
    batch: list[str] = []
    size = 2
    for entry in entries:
        text = json.dumps(entry, separators=(",", ":"), default=str)
        if len(text) + 2 > TAG_LIMIT:  # one event too big for a tag: keep who, when, what
            slim = {k: v for k, v in entry.items() if k not in ("gate", "comparison")}
            text = json.dumps({**slim, "truncated": True}, separators=(",", ":"))
        if batch and size + len(text) + 1 > TAG_LIMIT:
            chunks.append(f"[{','.join(batch)}]")
            batch, size = [], 2
        batch.append(text)
        size += len(text) + 1
    if batch:
        chunks.append(f"[{','.join(batch)}]")
    return chunks


def _write_log(
    client: MlflowClient, name: str, alias: str, tags: Mapping[str, str], entries: list[Any]
) -> None:
    """Store ``alias``'s log, writing only the parts that changed."""
    chunks = _packed(entries)
    for part, text in enumerate(chunks):
        if tags.get(log_key(alias, part)) != text:
            store.call(client.set_registered_model_tag, name, log_key(alias, part), text)
    part = len(chunks)
    while log_key(alias, part) in tags:
        store.call(client.delete_registered_model_tag, name, log_key(alias, part))
        part += 1


def record(client: MlflowClient, event: AliasEvent) -> None:
    """Add ``event`` to its alias's log and update the lines for people."""
    name, alias = event.model, event.alias
    tags = dict(store.call(client.get_registered_model, name).tags)
    moves = 1 + sum(e.alias == alias for e in read_events(tags))
    _keep_damaged(client, name, alias, tags)
    _write_log(client, name, alias, tags, [*_alias_log(tags, alias), event.to_dict()])
    store.call(client.set_registered_model_tag, name, summary_key(alias), model_line(event, moves))
    if event.version is not None:
        _version_tag(client, name, event.version, alias, holder_line(event))
    if event.previous is not None and event.previous != event.version:
        _version_tag(client, name, event.previous, alias, left_line(event))


def _version_tag(client: MlflowClient, name: str, version: str, alias: str, line: str) -> None:
    from mlflow.exceptions import MlflowException

    try:
        store.call(client.set_model_version_tag, name, version, summary_key(alias), line)
    except MlflowException as exc:  # a version deleted since: its line has no page
        if "RESOURCE_DOES_NOT_EXIST" not in str(exc.error_code):
            raise


def remove_last(client: MlflowClient, name: str, alias: str) -> AliasEvent | None:
    """Take the last move of ``alias`` out of its log (or legacy tag); returns it.

    The lines for people go back to the move before it, so an undone registration leaves
    the tags as they were.
    """
    tags = dict(store.call(client.get_registered_model, name).tags)
    events = [e for e in read_events(tags) if e.alias == alias]
    if not events:
        return None
    last = events[-1]
    entries = _alias_log(tags, alias)
    if entries and AliasEvent.from_dict(entries[-1]) == last:
        _keep_damaged(client, name, alias, tags)
        _write_log(client, name, alias, tags, entries[:-1])
    else:
        for key, value in tags.items():
            legacy = parse_entries(key, value) if key.startswith(LEGACY_PREFIX) else []
            if legacy and AliasEvent.from_dict(legacy[0]) == last:
                store.call(client.delete_registered_model_tag, name, key)
    before = events[:-1]
    if before:
        store.call(
            client.set_registered_model_tag,
            name,
            summary_key(alias),
            model_line(before[-1], len(before)),
        )
    else:
        store.call(client.delete_registered_model_tag, name, summary_key(alias))
    if last.previous is not None:
        held = next((e for e in reversed(before) if e.version == last.previous), None)
        if held is not None:
            _version_tag(client, name, last.previous, alias, holder_line(held))
    return last
