"""Secrets out of URLs and texts before they reach a message, a log line, a card or a listing.

Two ways a secret is found. By shape: the password of a URL's userinfo
(``http://alice:PW@host``) and the value of a secret query parameter (``?password=PW``).
By value: the secrets this process knows of (the environment's ``MLFLOW_TRACKING_TOKEN`` and
``MLFLOW_TRACKING_PASSWORD``, the password of ``MLFLOW_TRACKING_URI`` and of every URI
given to :func:`remember`), since an error message may quote one without the URL around it
(or cut the URL short). Every face (card, command line, magics, sidebar JSON, logging)
passes what it shows through :func:`redact_text`; :func:`redact` is for one URI.
"""

from __future__ import annotations

import logging
import os
import re
import urllib.parse

MASK = "***"
#: Query parameters whose value is a secret (``?password=``, ``?token=``, ...).
_SECRET_QUERY = re.compile(
    r"(?i)(^|&)((?:password|passwd|pwd|token|access_token|api_key|apikey|secret)=)[^&]*"
)
#: Environment variables whose whole value is a secret.
SECRET_ENV = ("MLFLOW_TRACKING_TOKEN", "MLFLOW_TRACKING_PASSWORD")
#: Environment variables holding a URI whose password is a secret.
URI_ENV = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "JUPYTER_MLOPS_PREDICTION_LOG")
#: Shorter values are not searched for by value (a two-letter password would mask every
#: word holding those letters); in a URL they are still masked by shape.
MIN_SECRET = 4

_remembered: set[str] = set()


def redact(url: str) -> str:
    """``url`` with its password (in the userinfo or a secret query parameter) as ``***``.

    A URL with no secret is returned unchanged; one that cannot be parsed loses its whole
    userinfo.
    """
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return re.sub(r"//[^/@]*@", f"//{MASK}@", url)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        if ":" in userinfo:
            netloc = f"{userinfo.split(':', 1)[0]}:{MASK}@{host}"
    query = _SECRET_QUERY.sub(rf"\1\2{MASK}", parts.query)
    return _replaced(url, parts, netloc, query)


def _replaced(url: str, parts: urllib.parse.SplitResult, netloc: str, query: str) -> str:
    """``url`` with its netloc and query replaced in place (``urlunsplit`` would turn
    ``sqlite:////abs`` into ``sqlite://abs``)."""
    if netloc != parts.netloc:
        url = url.replace(f"//{parts.netloc}", f"//{netloc}", 1)
    if query != parts.query:
        url = url.replace(f"?{parts.query}", f"?{query}" if query else "", 1)
    return url


def without_credentials(url: str) -> str:
    """``url`` with no userinfo and no secret query parameter: a link to show or open (a
    browser asks for the credentials itself; a masked ``alice:***@`` would not work)."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return redact(url)
    query = "&".join(p for p in parts.query.split("&") if p and not _SECRET_QUERY.match(p))
    return _replaced(url, parts, parts.netloc.rsplit("@", 1)[-1], query)


def url_secrets(url: str) -> set[str]:
    """The secret values in ``url`` (its password, secret query values), raw and decoded."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return set()
    found = set()
    userinfo = parts.netloc.rsplit("@", 1)[0] if "@" in parts.netloc else ""
    if ":" in userinfo:
        found.add(userinfo.split(":", 1)[1])
    for match in _SECRET_QUERY.finditer(parts.query):
        found.add(parts.query[match.end(2) : match.end()])
    found |= {urllib.parse.unquote(s) for s in found} | {urllib.parse.quote(s) for s in found}
    return {s for s in found if s}


def remember(*uris: str | None) -> None:
    """Search every later text for the secrets of ``uris`` by value too (the project's
    tracking URI and prediction log, say, read from pyproject.toml)."""
    for uri in uris:
        if uri:
            _remembered.update(url_secrets(uri))


def known_secrets() -> set[str]:
    """The secret values this process knows of, long enough to search for by value."""
    found = set(_remembered)
    for name in SECRET_ENV:
        if os.environ.get(name):
            found.add(os.environ[name])
    for name in URI_ENV:
        found |= url_secrets(os.environ.get(name, ""))
    return {s for s in found if len(s) >= MIN_SECRET}


_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"()<>]+")


def redact_text(text: str) -> str:
    """``text`` (an error message, say) with :func:`redact` applied to each URL in it and
    every known secret (:func:`known_secrets`) masked wherever it appears."""
    text = _URL_IN_TEXT.sub(lambda m: redact(m.group(0)), str(text))
    for secret in sorted(known_secrets(), key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, MASK)
    return text


class RedactingFilter(logging.Filter):
    """Masks secrets in a log record: its message, arguments and traceback text."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        safe = redact_text(message)
        if safe != message:
            record.msg, record.args = safe, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact_text(record.exc_text)
        return True


_FILTER = RedactingFilter()


def safe_logger(name: str) -> logging.Logger:
    """``logging.getLogger(name)`` whose records are redacted before any handler sees
    them (a logger's filters apply to its own records only: each module asks for one)."""
    logger = logging.getLogger(name)
    if _FILTER not in logger.filters:
        logger.addFilter(_FILTER)
    return logger
