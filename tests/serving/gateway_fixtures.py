"""Fixtures of the gateway tests (imported by tests/serving/test_gateway*.py): a real redis-server on a free
loopback port, and `lawtune serve` subprocesses on the tiny model.

    from gateway_fixtures import redis_url, start_server, free_port
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from live_server import free_port  # noqa: F401  (re-exported to the gateway tests)

VENV_BIN = Path(sys.executable).parent


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory) -> str:
    """A throwaway redis-server (no persistence) for the session; stopped at the end."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server is not installed: `apt-get install -y redis-server` (done by .ci/run)")
    port = free_port()
    workdir = tmp_path_factory.mktemp("redis")
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                             "--dir", str(workdir)], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        for _ in range(100):  # bounded: 10 s
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        break
            except OSError:
                time.sleep(0.1)
        else:
            pytest.fail("redis-server did not answer PING within 10 s")
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


class ServerProcess:
    """`lawtune serve ARGS` in a subprocess on a free loopback port; `url`, `stop()`, `rss_bytes()`."""

    def __init__(self, args: list[str], log_path: Path, port: int | None = None, env: dict[str, str] | None = None):
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.args = args
        self.log_path = log_path
        self.env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen | None = None

    def start(self, wait_s: float = 90.0) -> "ServerProcess":
        cmd = [str(VENV_BIN / "lawtune"), "serve", *self.args, "--host", "127.0.0.1", "--port", str(self.port)]
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, env=self.env)
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:  # bounded wait for the model to load
            if self.proc.poll() is not None:
                raise RuntimeError(f"lawtune serve exited with {self.proc.returncode}:\n{self.log_text()}")
            try:
                if httpx.get(self.url + "/readyz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"lawtune serve not ready within {wait_s} s:\n{self.log_text()}")

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:] if self.log_path.exists() else ""

    def rss_bytes(self) -> int:
        import psutil

        return psutil.Process(self.proc.pid).memory_info().rss

    def kill(self) -> None:
        """Die abruptly (SIGKILL), as a crashed engine would."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        if getattr(self, "_log", None):
            self._log.close()


def wait_until(predicate, timeout_s: float = 10.0, step_s: float = 0.05) -> bool:
    """Poll `predicate` until true or the bound runs out (returns the last value; never sleeps forever)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step_s)
    return bool(predicate())


class InProcessServer:
    """`create_app(settings)` in uvicorn on a free loopback port, in a thread of the test process."""

    def __init__(self, settings, engine=None):
        import threading

        import uvicorn

        from lawtune.serving.app import create_app

        self.port = free_port()
        settings = settings.model_copy(update={"host": "127.0.0.1", "port": self.port})
        self.app = create_app(settings, engine=engine)
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(self.app, host="127.0.0.1", port=self.port,
                                                    log_level="warning", lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def gateway(self):
        return self.app.state.gateway

    def start(self, wait_s: float = 60.0) -> "InProcessServer":
        self.thread.start()
        if not wait_until(lambda: _answers(self.url + "/readyz"), timeout_s=wait_s, step_s=0.1):
            self.stop()
            raise RuntimeError(f"the gateway test server did not become ready on {self.url}")
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def metric_value(text: str, name: str, **labels: str) -> float:
    """One sample's value from a Prometheus text exposition (0 when absent)."""
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return 0.0
