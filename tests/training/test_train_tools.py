"""`lawtune train` on prepared tool-use records: the tools reach the prompt, the calls are trained on."""

from __future__ import annotations

import json

import yaml

from lawtune.data.prepare import run as prepare
from lawtune.training.train import run as train

TOOL = {"name": "annual_leave_days", "description": "年休假天数",
        "parameters": {"type": "object", "properties": {"cumulative_work_years": {"type": "number"}}}}


def test_train_runs_on_prepared_tool_conversations(tiny_model_dir, tmp_path):
    records = [{"tools": [TOOL], "conversations": [
        {"role": "user", "content": f"我累计工作了{years}年，年休假有几天？"},
        {"role": "tool", "name": "annual_leave_days", "parameters": {"cumulative_work_years": years},
         "observation": {"result": days}},
        {"role": "assistant", "content": f"您每年可以休{days}天年休假。"}]}
        for years, days in [(y, 0 if y < 1 else 5 if y < 10 else 10 if y < 20 else 15) for y in range(1, 31)]]
    source = tmp_path / "tools.jsonl"
    source.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in records), encoding="utf-8")
    prepare([source], tmp_path / "data", dev_ratio=0.2, test_ratio=0.1)
    config = {
        "model": {"name_or_path": str(tiny_model_dir), "chat_template": "gemma"},
        "data_config": {"train_file": str(tmp_path / "data" / "train.jsonl"), "val_file": str(tmp_path / "data" / "dev.jsonl")},
        "max_input_length": 1024, "max_output_length": 96,
        "training_args": {"output_dir": str(tmp_path / "run"), "max_steps": 2, "learning_rate": 1e-2, "logging_steps": 1,
                          "eval_steps": 2, "save_steps": 2, "per_device_train_batch_size": 4},
        "peft_config": {"r": 4, "lora_alpha": 8},
    }
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    run_dir = train(tmp_path / "config.yaml", resume="none")
    info = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    train_data = info["data"]["train"]
    # every conversation kept (the call and the answer are supervised: tests/modeling/test_chat_tools.py)
    assert train_data["dropped"] == {} and train_data["examples"] > 0
    assert (run_dir / "adapter").is_dir()
