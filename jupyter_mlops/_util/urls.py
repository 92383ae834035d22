"""Secrets out of URLs before they reach a message, a log line, a card or a listing."""

from __future__ import annotations

import re
import urllib.parse


def redact(url: str) -> str:
    """``url`` with its password (in the userinfo or a ``password=`` query) as ``***``.

    A URL with no secret is returned unchanged (``urlunsplit`` would also rewrite
    ``sqlite:////abs`` paths); one that cannot be parsed loses its whole userinfo.
    """
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return re.sub(r"//[^/@]*@", "//***@", url)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        if ":" in userinfo:
            netloc = f"{userinfo.split(':', 1)[0]}:***@{host}"
    query = re.sub(r"(?i)(^|&)(password=)[^&]*", r"\1\2***", parts.query)
    if (netloc, query) == (parts.netloc, parts.query):
        return url
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc, query=query))


_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"()<>]+")


def redact_text(text: str) -> str:
    """``text`` (an error message, say) with :func:`redact` applied to each URL in it."""
    return _URL_IN_TEXT.sub(lambda m: redact(m.group(0)), text)
