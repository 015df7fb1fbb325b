"""Running the console: `edi web` in the foreground, or a thread of `edi serve`.

Its `[web]` keys (`enabled`, `host`, `port`, `secret`, `cookie_secure`, `session_hours`) are
declared with the others in `edi.config`. `cookie_secure` stays true unless the console is used
over plain HTTP on another host than localhost.
"""

from __future__ import annotations

import signal
import threading

import uvicorn

from edi.config import Config


def _server(cfg: Config, port: int | None = None, **app_options) -> uvicorn.Server:
    from edi.web.app import create_app

    settings = cfg.web
    config = uvicorn.Config(create_app(cfg, **app_options), host=settings.host,
                            port=settings.port if port is None else port, log_config=None, access_log=False)
    return uvicorn.Server(config)


class WebThread:
    """The console in a thread of another service (`edi serve`): `start()`, then `stop()`."""

    def __init__(self, cfg: Config, *, port: int | None = None, checks=None, on_deposit=None, gauges=None):
        self.server = _server(cfg, port, checks=checks, on_deposit=on_deposit, gauges=gauges)
        self._thread = threading.Thread(target=self._serve, name="edi-web", daemon=True)

    def _serve(self) -> None:
        try:
            self.server.run()
        except SystemExit:  # uvicorn exits when it cannot bind; start() reports it
            pass

    def start(self, timeout: float = 30.0) -> WebThread:
        self._thread.start()
        for _ in range(int(timeout * 20)):
            if self.server.started or not self._thread.is_alive():
                break
            self._thread.join(0.05)
        if not self.server.started:
            raise RuntimeError("la console web n'a pas démarré (port déjà utilisé ?)")
        return self

    @property
    def port(self) -> int:
        return self.server.servers[0].sockets[0].getsockname()[1]

    def stop(self, timeout: float = 10.0) -> None:
        self.server.should_exit = True
        self._thread.join(timeout)

    def alive(self) -> bool:
        return self._thread.is_alive()


def run(cfg: Config) -> None:
    """`edi web`: serve until SIGINT/SIGTERM, then stop cleanly (exit status 0)."""
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    server = WebThread(cfg).start()
    try:
        while not stop.wait(0.5) and server.alive():
            pass
    finally:
        server.stop()
