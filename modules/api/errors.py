"""Error answers of the HTTP server: every one is JSON that encodes, names the field at fault, and leaves the
keep-alive connection usable (an exception that escapes to uvicorn makes it close the connection)."""
from __future__ import annotations

import json
import logging
import math

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

log = logging.getLogger(__name__)

BODY_METHODS = {"POST", "PUT", "PATCH"}


def encodable(value):
    """`value` with what strict JSON cannot carry (NaN, Infinity, objects) turned into strings."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, dict):
        return {str(k): encodable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [encodable(v) for v in value]
    return str(value)


def non_finite_location(body: bytes) -> list | None:
    """The path to the first NaN, Infinity or overflowing number (1e400) in a JSON body; None if there is none or
    the body is not JSON (the route's own parsing reports that)."""
    found = []

    def constant(name):
        found.append(name)
        return float(name)

    def number(text):
        value = float(text)
        if not math.isfinite(value):
            found.append(text)
        return value

    try:
        parsed = json.loads(body, parse_constant=constant, parse_float=number)
    except (ValueError, RecursionError):
        return None
    if not found:
        return None

    def walk(value, path):
        if isinstance(value, float) and not math.isfinite(value):
            return path
        items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
        for key, item in items:
            where = walk(item, [*path, key])
            if where is not None:
                return where
        return None

    return walk(parsed, [])


def is_json(scope) -> bool:
    content_type = dict(scope.get("headers") or []).get(b"content-type", b"").split(b";")[0].strip().lower()
    return not content_type or content_type.endswith(b"json")  # FastAPI reads a body without a type as JSON too


class RejectNonFiniteNumbers:
    """422 for a JSON body holding NaN, Infinity or 1e400 anywhere: Python's JSON reader accepts them, but no route
    can use them and strict JSON cannot echo them back."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] not in BODY_METHODS or not is_json(scope):
            return await self.app(scope, receive, send)
        chunks, more = [], True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return None
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        body = b"".join(chunks)
        where = non_finite_location(body) if body else None
        if where is not None:
            detail = [{"type": "finite_number", "loc": ["body", *where], "msg": "Input should be a finite number",
                       "input": None}]
            return await JSONResponse(status_code=422, content={"detail": detail})(scope, receive, send)
        replayed = False

        async def replay():
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        return await self.app(scope, replay, send)


def error_content(e: Exception) -> dict:
    return {"error": type(e).__name__, "detail": str(e), "body": "", "errors": str(e)}


def install(app: FastAPI) -> None:
    """Error handling for `app`: the validation answer made encodable, non-finite numbers refused, and an unexpected
    exception answered as a 500 inside the app (A1111's shape) instead of escaping to the server."""

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, e: RequestValidationError):
        errors = [{**error, "input": error["input"][:200] + "..."}  # a huge refused value is not echoed back
                  if isinstance(error.get("input"), str) and len(error["input"]) > 200 else error for error in e.errors()]
        return JSONResponse(status_code=422, content={"detail": encodable(errors)})

    @app.middleware("http")
    async def unexpected_error(request: Request, call_next):
        try:
            return await call_next(request)
        except Exception as e:
            log.exception("API error: %s %s", request.method, request.url.path)
            return JSONResponse(status_code=500, content=error_content(e))

    app.add_middleware(RejectNonFiniteNumbers)
