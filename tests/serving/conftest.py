"""Serving fixtures: a real uvicorn server on a free loopback port, serving the tiny run folder.

The server runs in a background thread of the test process (so tests can also read the engine's state
directly); clients talk to it over real HTTP on 127.0.0.1.
"""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest


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


@pytest.fixture(scope="session")
def live_server(tiny_run_dir: Path):
    """The tiny run served with continuous batching (8 slots), base model included."""
    from lawtune.serving.settings import ServeSettings

    live = start_server(ServeSettings(model=str(tiny_run_dir), max_batch_size=8, default_max_tokens=32))
    yield live
    live.stop()


@pytest.fixture(scope="session")
def chat_format(tiny_run_dir: Path):
    """The run's tokenizer + stored template, loaded independently of the server (for usage checks)."""
    from transformers import AutoTokenizer

    from lawtune.modeling.chat import ChatFormat

    tokenizer = AutoTokenizer.from_pretrained(tiny_run_dir / "tokenizer")
    return ChatFormat(tokenizer, (tiny_run_dir / "chat_template.jinja").read_text(encoding="utf-8"))
