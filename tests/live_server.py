"""Servers in tests: a real uvicorn server on a free loopback port in a background thread of the test process,
and the helpers every test that starts a server shares (a free port, a bounded wait, an OpenAI client).

    from live_server import start_server, free_port, wait_until, answers, openai_client
    live = start_server(ServeSettings(model=str(run_dir)))   # waits until /readyz answers 200
    client = openai_client(live)                             # the OpenAI SDK on live.url + /v1, no retries

Imported by tests/serving/conftest.py and test modules of any folder (tests/ is on sys.path, tests/conftest.py);
kept out of conftest.py because several test folders have a conftest module and `import conftest` is ambiguous.
"""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

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

    @property
    def gateway(self) -> Any:
        return self.app.state.gateway

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(predicate: Callable[[], Any], timeout_s: float = 10.0, step_s: float = 0.05) -> bool:
    """Poll `predicate` until true or the bound runs out (returns the last value; never sleeps forever)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step_s)
    return bool(predicate())


def answers(url: str) -> bool:
    """GET `url` answers 200 (False while nothing listens there yet)."""
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def start_server(settings: Any, engine: Any = None, wait_ready: bool = True, wait_s: float = 60.0) -> LiveServer:
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
    if not wait_until(lambda: answers(live.url + path), timeout_s=wait_s, step_s=0.1):
        live.stop()
        raise RuntimeError(f"the test server did not become ready on {live.url}")
    return live


def openai_client(server: Any, **options: Any) -> Any:
    """The OpenAI SDK pointed at a test server: a placeholder key, no retries (a retry would hide a failure)."""
    from openai import OpenAI

    return OpenAI(base_url=server.url + "/v1", **{"api_key": "unused", "max_retries": 0, "timeout": 60, **options})
