"""Input limits of the HTTP API: the request body size (ASGI middleware, 413) and 422 bodies that say
what is wrong without echoing what was sent."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

MAX_ERRORS = 10
"""At most this many validation problems are listed in a 422 body."""

MAX_MESSAGE_CHARS = 200
"""A validation message longer than this is cut."""


class BodySizeLimit:
    """Refuse (413) a request whose body is longer than ``max_bytes``: by its Content-Length before
    reading anything, else (chunked) as soon as the bytes read pass the limit."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def _too_large(self) -> str:
        return f"request body larger than {self.max_bytes} bytes"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            await JSONResponse({"detail": self._too_large()}, status_code=413)(scope, receive, send)
            return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise HTTPException(status_code=413, detail=self._too_large())
            return message

        await self.app(scope, limited, send)


def validation_detail(errors: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Pydantic validation errors as ``{loc, msg, type}`` (no ``input``, no ``ctx``), at most
    ``MAX_ERRORS`` of them, each message at most ``MAX_MESSAGE_CHARS`` long."""
    out = [
        {
            "loc": [part if isinstance(part, int) else str(part)[:50] for part in err.get("loc", ())],
            "msg": str(err.get("msg", ""))[:MAX_MESSAGE_CHARS],
            "type": str(err.get("type", "")),
        }
        for err in errors[:MAX_ERRORS]
    ]
    if len(errors) > MAX_ERRORS:
        out.append({"loc": [], "msg": f"... and {len(errors) - MAX_ERRORS} more", "type": "truncated"})
    return out
