"""The training config: ChatGLM3's `configs/lora.yaml` layout plus `model:`, `eval:` and `speed:` sections.

    config = load_config(Path("configs/demo.yaml"), ["training_args.max_steps=20", "peft_config.r=16"])
    config.training_args.max_steps, config.peft_config.r, config.data_config.train_file

The original ChatGLM3 finetune_demo `lora.yaml` parses unchanged. Every problem is collected and reported
at once in one LawtuneError line: unknown keys name the nearest valid key, bad values name the field.
Keys that transformers renamed (`evaluation_strategy`, `no_cuda`, `group_by_length`, `warmup_ratio`, ...) are
translated with a warning; lawtune never rewrites a value silently.
"""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from lawtune.errors import LawtuneError
from lawtune.settings import nearest

# Old transformers key → (new key, how the value carries over).
RENAMED_TRAINING_ARGS = {
    "evaluation_strategy": "eval_strategy",
    "no_cuda": "use_cpu",
    "per_gpu_train_batch_size": "per_device_train_batch_size",
    "per_gpu_eval_batch_size": "per_device_eval_batch_size",
    "warmup_ratio": "warmup_steps",  # transformers 5 reads a float < 1 in warmup_steps as a ratio
    "group_by_length": "train_sampling_strategy",
}
# Old keys that no longer mean anything: accepted with a warning, then dropped.
DROPPED_TRAINING_ARGS = {
    "logging_dir": "TensorBoard logs always go to RUN/tensorboard",
    "overwrite_output_dir": "use --resume none to start over",
    "use_mps_device": "the device is picked automatically",
}
# Seq2SeqTrainingArguments keys ChatGLM3 uses that lawtune reads itself instead of passing on.
LAWTUNE_READS = {"predict_with_generate", "generation_config", "generation_max_length", "generation_num_beams",
                 "sortish_sampler"}


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ModelSection(Section):
    name_or_path: str = Field("default", description="imported model name, `default`, or a local HF folder")
    chat_template: str | None = Field(None, description="gemma | chatglm3 | a .jinja file; default: the tokenizer's own, else the family's")
    trust_remote_code: bool = False
    attn_implementation: str | None = Field(None, description=(
        "transformers attention (eager | sdpa | flash_attention_2); default: eager on a CPU, the model's default on a GPU"))
    compile: bool = Field(False, description="torch.compile each decoder layer (fuses the many small ops; ~2-3 min once)")
    init_adapter: str | None = Field(None, description=(
        "a run folder (its best adapter, else its final one) or an adapter folder whose LoRA weights this run starts "
        "from instead of fresh ones: a second stage on top of a first (lawtune demo --tools: the tool stage after "
        "the Q&A demo). Its base model and peft_config (r, target modules, trainable tokens) must be this run's"))


class DataConfig(Section):
    train_file: str
    val_file: str | None = None
    test_file: str | None = None
    num_proc: int | None = Field(None, ge=1, description="accepted for ChatGLM3 compatibility; encoding runs in-process")


class PeftConfig(Section):
    peft_type: Literal["LORA"] = "LORA"
    task_type: Literal["CAUSAL_LM"] = "CAUSAL_LM"
    r: int = Field(8, ge=1, le=1024)
    lora_alpha: float = Field(16, gt=0)
    lora_dropout: float = Field(0.05, ge=0, lt=1)
    target_modules: list[str] | str = "all-linear"
    bias: Literal["none", "all", "lora_only"] = "none"
    modules_to_save: list[str] | None = None
    # Embedding rows trained as well (PEFT's trainable tokens; the tied output row trains with them): token
    # ids or token texts such as "<end_of_turn>". LoRA on the linear layers reaches the frozen end-of-turn
    # row only through the hidden states, so a model learns to stop slowly without it (docs/training.md).
    trainable_token_indices: list[int | str] | None = None


class EvalSection(Section):
    dev_rows: int = Field(48, ge=1, description="dev loss is computed on the first min(dev_rows, len(dev)) rows")
    generate_rows: int | None = Field(None, ge=0, description="rows for ROUGE-L during training; default 50 if predict_with_generate else 0")
    max_new_tokens: int | None = Field(None, ge=1)
    early_stopping_patience: int | None = Field(None, ge=1, description="stop after this many evals without a better dev metric")


class TrainingArgs(BaseModel):
    """The Trainer's arguments: common ones typed here; any other `Seq2SeqTrainingArguments` field passes through."""

    model_config = ConfigDict(extra="allow", validate_assignment=True)

    output_dir: str = "runs/lawtune"
    max_steps: int = Field(-1, ge=-1)
    num_train_epochs: float = Field(3.0, gt=0)
    learning_rate: float = Field(2e-4, gt=0)
    lr_scheduler_type: str = "cosine"
    warmup_steps: float = Field(0, ge=0)
    weight_decay: float = Field(0.0, ge=0)
    per_device_train_batch_size: int = Field(4, ge=1)
    per_device_eval_batch_size: int = Field(8, ge=1)
    gradient_accumulation_steps: int = Field(1, ge=1)
    max_grad_norm: float = Field(1.0, ge=0)
    logging_strategy: Literal["steps", "epoch", "no"] = "steps"
    logging_steps: float = Field(10, gt=0)
    eval_strategy: Literal["steps", "epoch", "no"] = "steps"
    eval_steps: float | None = Field(None, gt=0)
    save_strategy: Literal["steps", "epoch", "no", "best"] = "steps"
    save_steps: float = Field(500, gt=0)
    save_total_limit: int | None = Field(3, ge=1)
    metric_for_best_model: str = "eval_loss"
    greater_is_better: bool | None = None
    seed: int = 42
    bf16: bool | Literal["auto"] = "auto"
    fp16: bool = False
    use_cpu: bool = False
    deepspeed: str | None = None
    train_sampling_strategy: str = "group_by_length"
    dataloader_num_workers: int = Field(0, ge=0)
    remove_unused_columns: bool = False
    log_level: str = "warning"
    report_to: str | list[str] = "none"
    predict_with_generate: bool = False
    generation_config: dict[str, Any] | None = None

    @field_validator("logging_strategy", "eval_strategy", "save_strategy", mode="before")
    @classmethod
    def _yaml_no_is_the_word_no(cls, value: Any) -> Any:
        return "no" if value is False else value  # YAML 1.1 reads `save_strategy: no` as the boolean False

    @model_validator(mode="before")
    @classmethod
    def _translate_old_keys(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        for old, new in RENAMED_TRAINING_ARGS.items():
            if old not in data:
                continue
            value = data.pop(old)
            if old == "group_by_length":
                value = "group_by_length" if value else "random"
            if new in data:
                raise ValueError(f"both {old!r} and its new name {new!r} are set; keep only {new!r}")
            warnings.warn(f"training_args.{old} is the old transformers name; read as {new}={value!r}", stacklevel=2)
            data[new] = value
        for old, why in DROPPED_TRAINING_ARGS.items():
            if old in data:
                data.pop(old)
                warnings.warn(f"training_args.{old} is ignored: {why}", stacklevel=2)
        return data


class SpeedSection(Section):
    grad_filter: float = Field(1e-6, ge=0, lt=1, description=(
        "output-projection backward skips vocabulary columns whose softmax is below this in every row "
        "(Cut Cross-Entropy's gradient filtering; the loss value is exact); 0 = exact gradient"))
    sparse_dropout: bool = Field(True, description=(
        "LoRA dropout draws only the dropped positions (same distribution as nn.Dropout, ~p as many random numbers)"))
    fused_lora: bool = Field(True, description=(
        "each LoRA linear layer's training forward and backward as one autograd node (same function and "
        "gradients as PEFT's; fewer passes over memory)"))
    checkpoint_layers: int | Literal["auto", "all"] = Field("auto", description=(
        "decoder layers whose activations are recomputed in the backward instead of kept (activation "
        "checkpointing, exact): 'auto' (the fewest that keep the rest's activations of the longest batch under "
        "256 MiB), 'all', a number (the first N layers), or 0; trades a second forward of those layers for memory"))
    trim_heap_layers: int = Field(3, ge=0, description=(
        "hand the heap's freed pages back to the OS (glibc malloc_trim) before every N-th decoder layer's forward "
        "and backward, not only after each step: 270-380 MiB lower peak in 12 demo steps for ~3% more training "
        "time; 0 = only after each step; exact either way"))

    @field_validator("checkpoint_layers")
    @classmethod
    def _layers_not_negative(cls, value):
        if value not in ("auto", "all") and value < 0:
            raise ValueError("must be 'auto', 'all' or a number of layers ≥ 0")
        return value


class TrainConfig(Section):
    model: ModelSection = ModelSection()
    data_config: DataConfig
    max_input_length: int = Field(256, ge=1)
    max_output_length: int = Field(256, ge=2, description="answer budget, end-of-turn token included")
    training_args: TrainingArgs = TrainingArgs()
    peft_config: PeftConfig = PeftConfig()
    eval: EvalSection = EvalSection()
    speed: SpeedSection = SpeedSection()

    @property
    def generate_rows(self) -> int:
        if self.eval.generate_rows is not None:
            return self.eval.generate_rows
        return 50 if self.training_args.predict_with_generate else 0

    @property
    def max_new_tokens(self) -> int:
        gen = self.training_args.generation_config or {}
        return self.eval.max_new_tokens or int(gen.get("max_new_tokens", self.max_output_length))


# ---- loading --------------------------------------------------------------------------------------------


def load_config(path: Path, overrides: list[str] | tuple[str, ...] = ()) -> TrainConfig:
    """Read YAML, apply dotted `key=value` overrides, validate; every problem in one LawtuneError."""
    path = Path(path)
    if not path.is_file():
        raise LawtuneError(f"config file {path} not found; start from configs/lora.yaml or configs/demo.yaml")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise LawtuneError(f"{path}{where} is not valid YAML: {getattr(error, 'problem', error)}") from error
    if not isinstance(data, dict):
        raise LawtuneError(f"{path} must be a mapping of sections (data_config, training_args, ...)")
    for override in overrides:
        apply_override(data, override)
    return validate_config(data, source=str(path))


def apply_override(data: dict, override: str) -> None:
    """`training_args.max_steps=20` → data["training_args"]["max_steps"] = 20 (value parsed as YAML)."""
    key, sep, raw = override.partition("=")
    if not sep or not key.strip():
        raise LawtuneError(f"override {override!r} is not key=value (example: training_args.max_steps=20)")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    parts = [part for part in key.strip().split(".")]
    # Short forms the demo and users reach for: `max_steps=` means training_args.max_steps.
    if len(parts) == 1 and parts[0] in TrainingArgs.model_fields and parts[0] not in TrainConfig.model_fields:
        parts = ["training_args", *parts]
    node = data
    for part in parts[:-1]:
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise LawtuneError(f"override {override!r}: {part!r} is a value, not a section")
        node = child
    node[parts[-1]] = value


def validate_config(data: dict, source: str = "config") -> TrainConfig:
    problems: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            config = TrainConfig.model_validate(data)
        except ValidationError as error:
            config = None
            problems += [_describe(item, data) for item in error.errors()]
    for warning in caught:
        warnings.warn(str(warning.message), stacklevel=2)
    if isinstance(data.get("training_args"), dict):
        problems += _unknown_training_args(data["training_args"])
    if problems:
        raise LawtuneError(f"{source}: " + "; ".join(problems))
    return config


def _describe(item: dict, data: dict) -> str:
    where = ".".join(str(part) for part in item["loc"])
    if item["type"] == "extra_forbidden":
        section = _section_fields(item["loc"][:-1])
        near = nearest(str(item["loc"][-1]), section, cutoff=0.5)
        hint = f" (did you mean {'.'.join([*map(str, item['loc'][:-1]), near])}?)" if near else \
            f" (valid keys here: {', '.join(section)})"
        return f"unknown key {where}{hint}"
    if item["type"] == "missing":
        return f"{where} is required"
    return f"{where}: {item['msg']} (got {item.get('input')!r})"


def _section_fields(loc: tuple) -> list[str]:
    model: Any = TrainConfig
    for part in loc:
        annotation = model.model_fields[part].annotation
        model = annotation
    return list(model.model_fields)


def _unknown_training_args(raw: dict) -> list[str]:
    """Keys lawtune does not type itself must be real Seq2SeqTrainingArguments fields."""
    known = set(TrainingArgs.model_fields) | set(RENAMED_TRAINING_ARGS) | set(DROPPED_TRAINING_ARGS)
    extra = [key for key in raw if key not in known]
    if not extra:
        return []
    from transformers import Seq2SeqTrainingArguments

    valid = {field.name for field in dataclasses.fields(Seq2SeqTrainingArguments)} | set(TrainingArgs.model_fields)
    problems = []
    for key in extra:
        if key not in valid:
            near = nearest(key, valid)
            hint = f" (did you mean training_args.{near}?)" if near else ""
            problems.append(f"unknown key training_args.{key}{hint}")
    return problems


def config_to_yaml(config: TrainConfig) -> str:
    return yaml.safe_dump(config.model_dump(mode="json"), allow_unicode=True, sort_keys=False)
