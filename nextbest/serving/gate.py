"""The one ASGI middleware in front of every route (including routers mounted later): request id,
authentication, scope, rate limit, metrics and the access log.

Per request: the ``X-Request-ID`` (the client's when sane, else new) is put in ``scope["nextbest"]`` (a
``RequestContext`` the routes add to) and echoed in the response; with keys configured, a path not in
``open_routes`` needs a known key (401), holding the path's scope (403, ``auth.required_scope``), within
its rate (429 + ``Retry-After``); then the app answers, and the request is counted, timed and logged
once, whatever the outcome (a 413, a 503 or an exception too).
"""

from __future__ import annotations

import time
from typing import Any

from starlette.responses import JSONResponse
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from nextbest.serving.auth import KeyRing, TokenBuckets, presented_key, required_scope, retry_after_header
from nextbest.serving.logs import REQUEST_ID_HEADER, AccessLog, RequestContext, request_id_of
from nextbest.serving.metrics import ServingMetrics

CONTEXT_KEY = "nextbest"
"""``scope[CONTEXT_KEY]``: the request's ``RequestContext``."""

UNMATCHED = "unmatched"


class Gate:
    """See the module docstring. ``router_app``: the FastAPI app, to name a refused request's route."""

    def __init__(
        self,
        app: ASGIApp,
        router_app: Any,
        keyring: KeyRing,
        buckets: TokenBuckets,
        metrics: ServingMetrics | None,
        access_log: AccessLog | None,
        open_routes: tuple[str, ...],
    ) -> None:
        self.app = app
        self.router_app = router_app
        self.keyring = keyring
        self.buckets = buckets
        self.metrics = metrics
        self.access_log = access_log
        self.open_routes = frozenset(open_routes)

    def _refusal(self, scope: Scope, ctx: RequestContext) -> JSONResponse | None:
        path = scope["path"]
        if not self.keyring or path in self.open_routes:
            return None
        presented = presented_key(scope["headers"])
        key = self.keyring.identify(presented) if presented else None
        if key is None:
            return JSONResponse(
                {"detail": "missing or unknown API key: send 'Authorization: Bearer <key>' or 'X-API-Key'"},
                status_code=401,
                headers={"WWW-Authenticate": "Bearer"},
            )
        ctx.key_id = key.key_id
        scope_needed = required_scope(path)
        if scope_needed is not None and scope_needed not in key.scopes:
            return JSONResponse(
                {"detail": f"key {key.key_id!r} lacks scope {scope_needed!r} needed by {path}"},
                status_code=403,
            )
        wait = self.buckets.take(key)
        if wait > 0:
            if self.metrics is not None:
                self.metrics.rate_limited.labels(key.key_id).inc()
            return JSONResponse(
                {"detail": f"rate limit of key {key.key_id!r} exceeded; retry after Retry-After seconds"},
                status_code=429,
                headers={"Retry-After": retry_after_header(wait)},
            )
        return None

    def _route_label(self, scope: Scope) -> str:
        route = scope.get("route")
        if route is not None and hasattr(route, "path"):
            return route.path
        for candidate in self.router_app.router.routes:  # a refused request was never routed
            match, _ = candidate.matches(scope)
            if match != Match.NONE:
                return candidate.path
        return UNMATCHED

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        request_id = request_id_of(dict(scope["headers"]).get(REQUEST_ID_HEADER.encode()))
        ctx = RequestContext(request_id)
        scope[CONTEXT_KEY] = ctx
        header = (REQUEST_ID_HEADER.encode(), request_id.encode())
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message = {**message, "headers": [*message.get("headers", ()), header]}
            await send(message)

        try:
            refusal = self._refusal(scope, ctx)
            if refusal is not None:
                await refusal(scope, receive, send_with_id)
            else:
                await self.app(scope, receive, send_with_id)
        finally:
            if self.metrics is not None or self.access_log is not None:
                seconds = time.perf_counter() - start
                route = self._route_label(scope)
                if self.metrics is not None:
                    self.metrics.observe_request(route, scope["method"], status, seconds)
                if self.access_log is not None:
                    self.access_log.write(ctx, scope["method"], route, status, seconds * 1e3)
