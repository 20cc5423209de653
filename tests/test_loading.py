"""load_model on a run folder and a plain model folder (tiny model)."""

from __future__ import annotations

import pytest

from lawtune.errors import LawtuneError
from lawtune.modeling.loading import load_model


def test_run_folder_loads_base_plus_adapter(tiny_run_dir):
    loaded = load_model(tiny_run_dir)
    assert loaded.adapter_path == tiny_run_dir / "best"
    assert loaded.chat.end_of_turn_text == "<end_of_turn>"
    base = load_model(tiny_run_dir, base_only=True)
    assert base.adapter_path is None
    ids = loaded.chat.encode_prompt([{"role": "user", "content": "劳动合同到期不续签有补偿吗？"}])
    assert ids == base.chat.encode_prompt([{"role": "user", "content": "劳动合同到期不续签有补偿吗？"}])


def test_model_folder_without_template_uses_the_family_default(tiny_model_dir):
    loaded = load_model(tiny_model_dir)
    assert loaded.adapter_path is None
    assert "<start_of_turn>" in loaded.chat.template


def test_missing_model_is_a_clear_error(tmp_path):
    with pytest.raises(LawtuneError, match="lawtune model import"):
        load_model("default")
    with pytest.raises(LawtuneError, match="not found"):
        load_model(tmp_path / "nope")
