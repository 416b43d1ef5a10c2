"""A real aiohttp server on 127.0.0.1 in a thread of its own, for the test stand-ins of seams we
cannot run (Tuya's OpenAPI, a webhook receiver, an endpoint that fails): the code under test
talks to it over TCP. ``serving`` starts servers and stops every one of them afterwards."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import threading
from collections.abc import Callable, Iterator
from typing import TypeVar

from aiohttp import web

from tests.support.ports import free_port


class ThreadedAiohttpServer:
    """Mixin: ``start()`` serves ``build_app()`` on ``port`` (a free one when 0) until ``stop()``.

    Subclasses set ``port`` (and may set ``ssl_context``) and implement ``build_app``.
    """

    port: int
    ssl_context: ssl.SSLContext | None = None
    thread_name = "test-http-server"
    _loop: asyncio.AbstractEventLoop | None = None
    _thread: threading.Thread | None = None
    _runner: web.AppRunner | None = None

    def build_app(self) -> web.Application:
        raise NotImplementedError

    def start(self):  # type: ignore[no-untyped-def]  # returns self, whatever the subclass
        """Returns once the server accepts connections, or raises why it could not."""
        if self.port == 0:
            self.port = free_port()
        ready = threading.Event()
        failure: list[BaseException] = []

        def serve() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                loop.run_until_complete(self._open())
            except BaseException as exc:
                failure.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self._close())
            loop.close()

        self._thread = threading.Thread(target=serve, name=self.thread_name, daemon=True)
        self._thread.start()
        ready.wait(10)
        if failure:
            raise failure[0]
        return self

    def stop(self) -> None:
        """Stop listening (the port is then refused) but keep everything recorded."""
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
        self._loop = None
        self._thread = None

    async def _open(self) -> None:
        self._runner = web.AppRunner(self.build_app(), access_log=None, shutdown_timeout=0.1)
        await self._runner.setup()
        site = web.TCPSite(
            self._runner, "127.0.0.1", self.port, reuse_address=True, ssl_context=self.ssl_context
        )
        await site.start()

    async def _close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


Server = TypeVar("Server", bound=ThreadedAiohttpServer)


@contextlib.contextmanager
def serving() -> Iterator[Callable[[Server], Server]]:
    """Yields ``start(server)``, which starts a server and returns it; on the way out every
    server started through it is stopped (the body of a fixture that starts servers)."""
    started: list[ThreadedAiohttpServer] = []

    def start(server: Server) -> Server:
        server.start()
        started.append(server)
        return server

    try:
        yield start
    finally:
        for server in reversed(started):
            server.stop()


class StatusServer(ThreadedAiohttpServer):
    """Answers every request with ``status`` and an empty body (an endpoint that is failing)."""

    thread_name = "test-status-server"

    def __init__(self, status: int, port: int = 0) -> None:
        self.status = status
        self.port = port

    def build_app(self) -> web.Application:
        async def answer(request: web.Request) -> web.Response:
            return web.Response(status=self.status)

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", answer)
        return app
