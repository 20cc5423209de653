"""Fixtures for the training tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from training_helpers import corpus_conversations, write_jsonl


@pytest.fixture(scope="session")
def conversation_files(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("conversations")
    rows = corpus_conversations()
    return {"train": write_jsonl(folder / "train.jsonl", rows[:48]), "dev": write_jsonl(folder / "dev.jsonl", rows[48:])}
