"""The training config: ChatGLM3 compatibility, overrides, and one-line errors that list every problem."""

from __future__ import annotations

from pathlib import Path

import pytest

from lawtune.errors import LawtuneError
from lawtune.training.config import load_config

FIXTURES = Path(__file__).parent.parent / "fixtures"
REPO = Path(__file__).parent.parent.parent


def write(tmp_path, text: str) -> Path:
    path = tmp_path / "c.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_original_chatglm3_lora_yaml_parses_with_a_warning_for_the_renamed_key():
    with pytest.warns(UserWarning, match="evaluation_strategy is the old transformers name; read as eval_strategy='steps'"):
        config = load_config(FIXTURES / "chatglm3_lora.yaml")
    assert config.data_config.train_file == "train.json"
    assert config.data_config.num_proc == 16
    assert (config.max_input_length, config.max_output_length) == (256, 512)
    args = config.training_args
    assert (args.eval_strategy, args.eval_steps, args.save_steps, args.learning_rate) == ("steps", 500, 2000, 3e-4)
    assert args.model_extra == {"per_device_eval_batch_size": 16} or args.per_device_eval_batch_size == 16
    assert config.peft_config.r == 32 and config.peft_config.lora_dropout == 0.1
    # predict_with_generate turns on generation metrics on min(50, len(dev)) rows with its max_new_tokens
    assert config.generate_rows == 50 and config.max_new_tokens == 512


def test_original_chatglm3_config_with_edited_paths_and_overrides(tmp_path):
    text = (FIXTURES / "chatglm3_lora.yaml").read_text(encoding="utf-8")
    text = text.replace("train_file: train.json", "train_file: out/legal/train.jsonl")
    with pytest.warns(UserWarning):
        config = load_config(write(tmp_path, text), ["training_args.max_steps=20", "peft_config.r=8",
                                                      "model.name_or_path=/models/x", "output_dir=runs/y"])
    assert config.data_config.train_file == "out/legal/train.jsonl"
    assert config.training_args.max_steps == 20 and config.peft_config.r == 8
    assert config.model.name_or_path == "/models/x" and config.training_args.output_dir == "runs/y"


def test_every_problem_is_reported_at_once_with_the_nearest_key(tmp_path):
    path = write(tmp_path, """
data_config: {train_file: a.jsonl}
peft_confg: {r: 8}
max_input_length: -3
training_args: {learning_rat: 0.1, per_device_train_batch_size: zero}
""")
    with pytest.raises(LawtuneError) as error:
        load_config(path)
    message = str(error.value)
    assert "\n" not in message
    assert "unknown key peft_confg (did you mean peft_config?)" in message
    assert "max_input_length" in message and "greater than or equal to 1" in message
    assert "training_args.per_device_train_batch_size" in message
    assert "unknown key training_args.learning_rat (did you mean training_args.learning_rate?)" in message


def test_unknown_nested_key_names_its_section(tmp_path):
    path = write(tmp_path, "data_config: {train_file: a.jsonl, val_fle: b.jsonl}\n")
    with pytest.raises(LawtuneError, match=r"unknown key data_config.val_fle \(did you mean data_config.val_file\?\)"):
        load_config(path)


def test_passthrough_training_args_are_checked_against_transformers(tmp_path):
    config = load_config(write(tmp_path, "data_config: {train_file: a}\ntraining_args: {adam_beta2: 0.95}\n"))
    assert config.training_args.model_extra == {"adam_beta2": 0.95}


def test_missing_required_file_key_and_bad_yaml_and_missing_file(tmp_path):
    with pytest.raises(LawtuneError, match="data_config is required"):
        load_config(write(tmp_path, "max_input_length: 10\n"))
    with pytest.raises(LawtuneError, match="line 2 is not valid YAML"):
        load_config(write(tmp_path, "a: 1\n b: [\n"))
    with pytest.raises(LawtuneError, match="config file .*nope.yaml not found"):
        load_config(tmp_path / "nope.yaml")


def test_bad_override_is_a_clear_error(tmp_path):
    path = write(tmp_path, "data_config: {train_file: a}\n")
    with pytest.raises(LawtuneError, match="is not key=value"):
        load_config(path, ["max_steps"])
    with pytest.raises(LawtuneError, match="unknown key training_args.max_step"):
        load_config(path, ["training_args.max_step=3"])


def test_yaml_no_means_no_for_strategies_and_false_for_booleans(tmp_path):
    path = write(tmp_path, "data_config: {train_file: a}\ntraining_args: {eval_strategy: no}\n")
    config = load_config(path, ["training_args.save_strategy=no", "speed.sparse_dropout=off",
                                "training_args.gradient_checkpointing=off", "model.compile=true"])
    assert (config.training_args.eval_strategy, config.training_args.save_strategy) == ("no", "no")
    assert config.speed.sparse_dropout is False and config.model.compile is True
    assert config.training_args.model_extra["gradient_checkpointing"] is False  # passed on to transformers as is


@pytest.mark.parametrize("name", ["lora.yaml", "demo.yaml", "full.yaml"])
def test_shipped_configs_validate_and_name_their_command(name):
    path = REPO / "configs" / name
    config = load_config(path)
    assert path.read_text(encoding="utf-8").startswith("# lawtune train configs/")
    assert config.peft_config.target_modules == "all-linear"


def test_speed_section_defaults_overrides_and_errors(tmp_path):
    path = write(tmp_path, "data_config:\n  train_file: t.jsonl\n")
    config = load_config(path)
    assert (config.speed.grad_filter, config.speed.sparse_dropout) == (1e-6, True)
    exact = load_config(path, ["speed.grad_filter=0", "speed.sparse_dropout=false"])
    assert (exact.speed.grad_filter, exact.speed.sparse_dropout) == (0.0, False)
    with pytest.raises(LawtuneError, match="speed.grad_filter"):
        load_config(path, ["speed.grad_filter=2"])
    with pytest.raises(LawtuneError, match=r"did you mean speed.sparse_dropout\?"):
        load_config(path, ["speed.sparse_dropuot=true"])


def test_trainable_token_indices_resolve_token_texts_and_reject_unknown_ones(tiny_model_dir):
    from lawtune.modeling.loading import load_tokenizer
    from lawtune.training.train import token_indices

    tokenizer = load_tokenizer(tiny_model_dir)
    end = tokenizer.convert_tokens_to_ids("<end_of_turn>")
    assert token_indices(["<end_of_turn>", end, 3], tokenizer) == sorted({end, 3})
    assert token_indices(None, tokenizer) is None
    with pytest.raises(LawtuneError, match="'<nope>' is not a token of this tokenizer"):
        token_indices(["<nope>"], tokenizer)
    with pytest.raises(LawtuneError, match="outside the vocabulary"):
        token_indices([10**7], tokenizer)


def test_values_training_does_not_use_as_given_are_named_with_what_is_used_and_why(tmp_path):
    from lawtune.training.train import overridden_arguments, training_arguments

    path = write(tmp_path, "data_config: {train_file: a}\ntraining_args: {report_to: wandb, disable_tqdm: false, "
                           "label_names: [labels]}\n")
    config = load_config(path)
    changed = overridden_arguments(config, has_dev=False)
    assert set(changed) == {"training_args.report_to", "training_args.disable_tqdm", "training_args.eval_strategy"}
    report_to, evaluation = changed["training_args.report_to"], changed["training_args.eval_strategy"]
    assert (report_to["given"], report_to["used"]) == ("wandb", []) and "tensorboard" in report_to["why"]
    assert (evaluation["given"], evaluation["used"]) == ("steps", "no") and "val_file" in evaluation["why"]
    args, _precision = training_arguments(config, tmp_path / "run", has_dev=False)  # what the Trainer really gets
    assert (args.report_to, args.disable_tqdm, args.eval_strategy) == ([], True, "no")
    # the defaults, TensorBoard (written anyway) and a dev set: nothing to say
    quiet = load_config(write(tmp_path, "data_config: {train_file: a, val_file: b}\n"
                                        "training_args: {report_to: tensorboard}\n"))
    assert overridden_arguments(quiet, has_dev=True) == {}
