"""Fixtures of the gateway tests (imported by tests/serving/test_gateway*.py): a real redis-server on a free
loopback port, and `lawtune serve` subprocesses on the tiny model.

    from gateway_fixtures import redis_url, ServerProcess, metric_value
    (an in-process server: live_server.start_server)
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from live_server import answers, free_port, wait_until

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
        if not wait_until(lambda: _redis_pong(port), timeout_s=10, step_s=0.1):
            pytest.fail("redis-server did not answer PING within 10 s")
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _redis_pong(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


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
        # bounded wait for the model to load; a server that exits on the way ends the wait at once
        ready = wait_until(lambda: self.proc.poll() is not None or answers(self.url + "/readyz"), wait_s, step_s=0.2)
        if self.proc.poll() is not None:
            raise RuntimeError(f"lawtune serve exited with {self.proc.returncode}:\n{self.log_text()}")
        if not ready:
            self.stop()
            raise RuntimeError(f"lawtune serve not ready within {wait_s} s:\n{self.log_text()}")
        return self

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


def metric_value(text: str, name: str, **labels: str) -> float:
    """One sample's value from a Prometheus text exposition (0 when absent)."""
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return 0.0
