"""Who may call a deployment: bearer-token authentication, and a request id on every answer.

A deployment made with a token stores only a salted scrypt hash of it (states written before
hold an unsalted ``token_sha256``, still accepted); every endpoint but the health checks
(``/health``, ``/ping``) then needs ``Authorization: Bearer <token>``, compared in constant
time. scrypt is slow on purpose, so it runs off the event loop, once per token: the SHA-256 of
a token that verified is kept in memory, and later requests compare against that. A pure
ASGI middleware, so a refused request costs no routing and no body read, and the
request id it assigns is the one the prediction log and the ``X-Request-ID`` header carry.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import uuid
from typing import Any

from jupyter_mlops.serving.metrics import Metrics
from jupyter_mlops.serving.protocols import error_response
from jupyter_mlops.serving.state import token_matches, token_required

__all__ = ["PUBLIC_PATHS", "TokenAuth"]

#: Paths answered without a token: load balancers and orchestrators probe them.
PUBLIC_PATHS = frozenset({"/health", "/ping"})


class TokenAuth:
    """Pure ASGI middleware: a request id on every response, bearer token on all but health."""

    def __init__(self, app: Any, *, state: dict[str, Any], metrics: Metrics) -> None:
        self.app = app
        self.record = {k: state.get(k) for k in ("token_hash", "token_sha256")}
        self.required = token_required(self.record)
        self.metrics = metrics
        self._verified: bytes | None = None  # SHA-256 of the token that passed scrypt
        self._slow = asyncio.Semaphore(2)  # scrypt checks at once (32 MiB each)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        id_header = (b"x-request-id", request_id.encode())

        async def send_with_id(message: Any) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), id_header]
            await send(message)

        if self.required and scope["path"] not in PUBLIC_PATHS:
            refusal = await self._refusal(scope)
            if refusal is not None:
                status, message = refusal
                self.metrics.refused(status)
                response = error_response(
                    status, "UNAUTHORIZED" if status == 401 else "FORBIDDEN", message, request_id
                )
                if status == 401:
                    response.headers["www-authenticate"] = "Bearer"
                await response(scope, receive, send_with_id)
                return
        await self.app(scope, receive, send_with_id)

    async def _refusal(self, scope: Any) -> tuple[int, str] | None:
        auth = next((v for k, v in scope["headers"] if k == b"authorization"), None)
        if auth is None:
            return (
                401,
                "This deployment needs a bearer token: send 'Authorization: Bearer <token>'.",
            )
        scheme, _, token = auth.decode("latin-1").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return 401, "Send the token as 'Authorization: Bearer <token>'."
        token = token.strip()
        digest = hashlib.sha256(token.encode()).digest()
        verified = self._verified
        if verified is not None and hmac.compare_digest(digest, verified):
            return None
        async with self._slow:
            ok = await asyncio.to_thread(token_matches, self.record, token)
        if not ok:
            return 403, "Wrong token for this deployment."
        self._verified = digest
        return None
