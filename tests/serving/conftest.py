"""Serving fixtures: a real uvicorn server on a free loopback port, serving the tiny run folder.

The server runs in a background thread of the test process (so tests can also read the engine's state
directly); clients talk to it over real HTTP on 127.0.0.1.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from live_server import openai_client, start_server


@pytest.fixture(scope="session")
def live_server(tiny_run_dir: Path):
    """The tiny run served with continuous batching (8 slots), base model included."""
    from lawtune.serving.settings import ServeSettings

    live = start_server(ServeSettings(model=str(tiny_run_dir), dtype="float32", max_batch_size=8, default_max_tokens=32))
    yield live
    live.stop()


@pytest.fixture(scope="session")
def bundled_kb(tmp_path_factory) -> Path:
    """A knowledge base of the laws bundled with lawtune, built once (a second or two); servers only read it."""
    from lawtune.kb.build import build

    path = tmp_path_factory.mktemp("serving-kb") / "kb.sqlite"
    build([], path)
    return path


@pytest.fixture(scope="module")
def client(live_server):
    """The OpenAI SDK on `live_server` (no retries: a retry would hide a failure)."""
    return openai_client(live_server)


@pytest.fixture(scope="session")
def chat_format(tiny_run_dir: Path):
    """The run's tokenizer + stored template, loaded independently of the server (for usage checks)."""
    from transformers import AutoTokenizer

    from lawtune.modeling.chat import ChatFormat

    tokenizer = AutoTokenizer.from_pretrained(tiny_run_dir / "tokenizer")
    return ChatFormat(tokenizer, (tiny_run_dir / "chat_template.jinja").read_text(encoding="utf-8"))
