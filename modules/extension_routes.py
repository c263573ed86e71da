"""The routes extensions add to the served app in on_app_started (webui mounts Gradio after the callbacks: at the root
it would answer every path) are behind the same doors as the page and the API. A1111 leaves them open;
here a request passes when it may use the page (no --gradio-auth, or logged in to the page) or brings --api-auth
credentials; without a page (--nowebui) only --api-auth closes them."""
from __future__ import annotations

from fastapi import FastAPI, HTTPException
from fastapi.responses import JSONResponse
from fastapi.security import HTTPBasic
from starlette.requests import HTTPConnection
from starlette.routing import BaseRoute, Mount

from modules.api.api import credentials_checker


def added_routes(app: FastAPI, before: list[BaseRoute]) -> list[BaseRoute]:
    """The app's routes that are not in `before`: what the extensions added."""
    known = set(map(id, before))
    return [route for route in app.router.routes if id(route) not in known]


def gradio_app_of(app: FastAPI):
    """The Gradio app mounted on `app` by gr.mount_gradio_app."""
    from gradio.routes import App

    return next(route.app for route in app.router.routes if isinstance(route, Mount) and isinstance(route.app, App))


def logged_in_user(page, cookies) -> str | None:
    """Who is logged in to the Gradio app `page`, as its /user route answers it: the session cookie its login set."""
    token = cookies.get(f"access-token-{page.cookie_id}") or cookies.get(f"access-token-unsecure-{page.cookie_id}")
    return page.tokens.get(token)


class Doors:
    """Who may use the extensions' routes: page users (when a page is served) and API clients."""

    def __init__(self, page=None, page_logins: list | None = None, api_logins: str | None = None):
        self.page = page  # the mounted Gradio app, or None without a page
        self.page_login = page is not None and bool(page_logins)
        self.api_check = credentials_checker(api_logins) if api_logins else None

    @property
    def open(self) -> bool:
        """No door to pass: the page is served without a login, or there is no page and no --api-auth."""
        return (self.page is not None and not self.page_login) or (self.page is None and self.api_check is None)

    async def allow(self, connection: HTTPConnection) -> bool:
        return self.open or (self.page_login and self._page_user(connection) is not None) or \
            await self._api_client(connection)

    def _page_user(self, connection: HTTPConnection) -> str | None:
        return logged_in_user(self.page, connection.cookies)

    async def _api_client(self, connection: HTTPConnection) -> bool:
        if self.api_check is None:
            return False
        try:
            self.api_check(await HTTPBasic(auto_error=False)(connection))
        except HTTPException:
            return False
        return True


def guard(routes: list[BaseRoute], doors: Doors) -> None:
    """Each route answers only requests `doors` allow (401 to others; a websocket is closed). Its handle() is wrapped,
    so the route keeps its kind and place (a route, an included router, a mount) and the API docs still list it."""
    if doors.open:
        return
    for route in routes:
        route.handle = _behind(doors, route.handle)


def _behind(doors: Doors, handle):
    async def guarded(scope, receive, send):
        if await doors.allow(HTTPConnection(scope)):
            await handle(scope, receive, send)
        elif scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
        else:
            headers = {"WWW-Authenticate": "Basic"} if doors.api_check is not None else None
            await JSONResponse({"detail": "Not authenticated"}, status_code=401, headers=headers)(scope, receive, send)

    return guarded
