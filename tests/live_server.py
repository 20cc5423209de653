"""A real uvicorn server on a free loopback port, in a background thread of the test process.

Imported by tests/serving/conftest.py and test modules of any folder (`from live_server import start_server`:
tests/ is on sys.path, tests/conftest.py); kept out
of conftest.py because several test folders have a conftest module and `import conftest` is ambiguous.
"""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass
from typing import Any

import httpx


@dataclass
class LiveServer:
    url: str  # http://127.0.0.1:PORT
    app: Any
    server: Any
    thread: threading.Thread

    @property
    def engine(self) -> Any:
        return self.app.state.engine

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(settings: Any, engine: Any = None, wait_ready: bool = True) -> LiveServer:
    """Run `create_app(settings, engine)` in uvicorn on a free port; wait until it answers (and is ready)."""
    import uvicorn

    from lawtune.serving.app import create_app

    port = free_port()
    settings = settings.model_copy(update={"host": "127.0.0.1", "port": port})
    app = create_app(settings, engine=engine)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    live = LiveServer(f"http://127.0.0.1:{port}", app, server, thread)
    path = "/readyz" if wait_ready else "/healthz"
    for _ in range(600):  # bounded: 60 s
        try:
            if httpx.get(live.url + path, timeout=1).status_code == 200:
                return live
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    live.stop()
    raise RuntimeError(f"the test server did not become ready on {live.url}")
