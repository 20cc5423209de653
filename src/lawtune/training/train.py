"""`lawtune train CONFIG [key=value ...]`: LoRA SFT with the HF Trainer + PEFT, into a run folder.

    lawtune train configs/demo.yaml
    lawtune train configs/lora.yaml training_args.max_steps=200 peft_config.r=16 --resume none
    torchrun --nproc_per_node 2 -m lawtune.cli train configs/demo.yaml      # or: accelerate launch --multi_gpu ...

    from lawtune.training.train import run
    run_dir = run(Path("configs/demo.yaml"), ["max_steps=20"], resume="auto")

Reads top to bottom: config → model + template → data → run folder → Trainer → final save → report.
The run folder layout is `lawtune.modeling.runs`; later commands load it with `load_model(run_dir)`.
"""

from __future__ import annotations

import json
import time
import warnings
from pathlib import Path

from lawtune.data.conversations import read_examples
from lawtune.errors import LawtuneError
from lawtune.fsutil import atomic_dir, atomic_write_json, atomic_write_text, sha256_file, sha256_tree
from lawtune.modeling.chat import ChatFormat
from lawtune.modeling.loading import bf16_supported
from lawtune.modeling.runs import (CONFIG_FILE, FINAL_ADAPTER_DIR, RUN_INFO, TEMPLATE_FILE, TENSORBOARD_DIR, TOKENIZER_DIR,
                                   base_model_record, base_model_reference, resolve_model_path)
from lawtune.training.config import LAWTUNE_READS, ModelSection, TrainConfig, config_to_yaml, load_config
from lawtune.training.data import EncodedData, encode_rows, safe_pad_id


def run(config_path: Path, overrides: list[str] | tuple[str, ...] = (), resume: str = "auto") -> Path:
    """Train as the config says; return the run folder (= training_args.output_dir)."""
    config = load_config(Path(config_path), list(overrides))
    run_dir = Path(config.training_args.output_dir).expanduser().resolve()

    # ---- model, tokenizer, chat template ---------------------------------------------------------------
    from accelerate import PartialState

    from lawtune.modeling.loading import open_chat

    # The Trainer arguments set up the process group under torchrun / accelerate launch (gloo on CPU); built
    # first so that every step below knows its rank.
    has_dev = bool(config.data_config.val_file)
    args, precision = training_arguments(config, run_dir, has_dev)
    state = PartialState()
    overridden = overridden_arguments(config, has_dev)  # said here, and kept in run.json
    if state.is_main_process:
        for key, change in overridden.items():
            warnings.warn(f"{key}={change['given']!r} is not used: {change['used']!r} instead ({change['why']})",
                          stacklevel=2)
    model_dir = resolve_model_path(config.model.name_or_path)
    chat = open_chat(model_dir, config.model.chat_template, config.model.trust_remote_code)
    tokenizer = chat.tokenizer

    # ---- data ----------------------------------------------------------------------------------------------
    train = _encode(config, chat, config.data_config.train_file)
    if not train.examples:
        raise LawtuneError(f"no usable training sample in {config.data_config.train_file} (dropped: {dict(train.dropped)})")
    dev = _encode(config, chat, config.data_config.val_file) if config.data_config.val_file else None
    if dev is not None and not dev.examples:
        raise LawtuneError(f"no usable dev sample in {config.data_config.val_file} (dropped: {dict(dev.dropped)}); "
                           "fix the file or remove data_config.val_file")
    if dev is not None:
        # min(N, len(dev)): a small dev set is used whole, never an IndexError. Sorted by length so the
        # eval batches carry little padding (the loss does not depend on the order).
        dev.examples = sorted(dev.examples[: config.eval.dev_rows], key=lambda ex: len(ex["input_ids"]))

    # ---- run folder --------------------------------------------------------------------------------------
    from lawtune.training.resume import plan_resume, tidy_run_dir

    start = plan_resume(run_dir, resume)
    state.wait_for_everyone()  # every process has decided before the main one changes the folder
    if state.is_main_process:
        tidy_run_dir(run_dir, start)
        _write_run_info(run_dir, config, model_dir, tokenizer, chat, train, dev, status="training",
                        extra={"overridden": overridden})
    state.wait_for_everyone()

    # ---- trainer -------------------------------------------------------------------------------------------
    trainer = _build_trainer(config, args, run_dir, model_dir, train, dev, tokenizer, chat)
    # imported now, not after an hour of training: code changed under a running process (an upgrade, a
    # checkout) once made the final import fail after the adapter was saved, leaving run.json "training"
    from lawtune.training.plot import plot_loss_curve

    started = time.monotonic()
    trainer.train(resume_from_checkpoint=str(start) if start else None)
    seconds = time.monotonic() - started
    from lawtune.training.vocab_loss import release_buffers

    release_buffers()  # the loss head's big reused buffers; nothing after training needs them

    # ---- final save and report ------------------------------------------------------------------------
    if state.is_main_process:
        with atomic_dir(run_dir / FINAL_ADAPTER_DIR) as tmp:
            trainer.model.save_pretrained(tmp)
        plot_loss_curve(run_dir)
        tokens = trainer.token_counter.tokens * max(state.num_processes, 1)
        _write_run_info(run_dir, config, model_dir, tokenizer, chat, train, dev, status="finished", extra={
            "final_step": trainer.state.global_step, "precision": precision, "world_size": state.num_processes,
            "checkpointed_layers": trainer.checkpointed_layers,  # activation checkpointing (speed.checkpoint_layers)
            "attention": trainer.attention,  # model.attn_implementation, or what training_attention chose
            "loss_path": trainer.head_path,  # fused (filtered head backward) / sliced / full: see training/loss.py
            "resumed_from": start.name if start else None, "train_seconds": round(seconds, 1),
            "supervised_tokens_per_s_this_session": round(tokens / max(seconds, 1e-9), 1),
        })
    state.wait_for_everyone()
    return run_dir


def _encode(config: TrainConfig, chat: ChatFormat, file: str) -> EncodedData:
    examples = list(read_examples(Path(file).expanduser(), strict=False))
    return encode_rows([example.messages for example in examples], chat, config.max_input_length,
                       config.max_output_length, tools=[example.tools for example in examples])


def _write_run_info(run_dir, config, model_dir, tokenizer, chat, train, dev, status, extra=None) -> None:
    import peft
    import torch
    import transformers

    import lawtune

    run_dir.mkdir(parents=True, exist_ok=True)
    previous = json.loads((run_dir / RUN_INFO).read_text(encoding="utf-8")) if (run_dir / RUN_INFO).is_file() else {}
    if status == "training" or "base_model" not in previous:
        atomic_write_text(run_dir / TEMPLATE_FILE, chat.template)
        atomic_write_text(run_dir / CONFIG_FILE, config_to_yaml(config))
        with atomic_dir(run_dir / TOKENIZER_DIR) as tmp:
            tokenizer.save_pretrained(tmp)
    record = base_model_record(model_dir)  # absolute path (+ imported name): a moved run still finds its base
    base = previous.get("base_model") if previous.get("base_model", {}).get("path") == record["path"] else None
    data = {name: _data_info(file, enc) for name, file, enc in
            (("train", config.data_config.train_file, train), ("dev", config.data_config.val_file, dev)) if enc}
    info = {
        **previous,
        "status": status,
        "base_model": base or {**record, "sha256": sha256_tree(model_dir)},
        "model_name": config.model.name_or_path,
        "template_file": TEMPLATE_FILE,
        "end_of_turn": chat.end_of_turn_text,
        "data": data,
        "seed": config.training_args.seed,
        "versions": {"lawtune": getattr(lawtune, "__version__", "0"), "torch": torch.__version__,
                     "transformers": transformers.__version__, "peft": peft.__version__},
        **(extra or {}),
    }
    atomic_write_json(run_dir / RUN_INFO, info)


def _data_info(file: str, encoded: EncodedData) -> dict:
    path = Path(file).expanduser().resolve()
    return {"file": str(path), "sha256": sha256_file(path), "examples": len(encoded.examples),
            "dropped": dict(encoded.dropped), "changed": dict(encoded.changed), "supervised_tokens": encoded.supervised_tokens,
            "tokens": encoded.total_tokens}


# ---- trainer wiring ------------------------------------------------------------------------------------------


def _build_trainer(config: TrainConfig, args, run_dir: Path, model_dir: Path, train, dev, tokenizer, chat):
    import torch
    from peft import LoraConfig, get_peft_model
    from torch.utils.tensorboard import SummaryWriter
    from transformers import AutoModelForCausalLM
    from transformers.integrations import TensorBoardCallback

    from lawtune.training import callbacks as cb
    from lawtune.training.data import Collator
    from lawtune.training.loss import SFTTrainer, TokenCounter

    torch.manual_seed(args.seed)
    attention = training_attention(config.model, config.max_input_length + config.max_output_length)
    kwargs = {"attn_implementation": attention} if attention else {}
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32,
                                                 trust_remote_code=config.model.trust_remote_code, **kwargs)
    model.config.use_cache = False
    peft = config.peft_config
    lora = LoraConfig(r=peft.r, lora_alpha=peft.lora_alpha, lora_dropout=peft.lora_dropout, bias=peft.bias,
                      target_modules=peft.target_modules, modules_to_save=peft.modules_to_save, task_type="CAUSAL_LM",
                      trainable_token_indices=token_indices(peft.trainable_token_indices, tokenizer))
    try:
        model = get_peft_model(model, lora)
    except ValueError as error:  # e.g. target_modules naming layers the model does not have
        raise LawtuneError(f"peft_config does not fit this model: {error}") from error
    # adapter_config.json names its base: an imported model's name resolves on any machine, a temp path not
    model.peft_config["default"].base_model_name_or_path = base_model_reference(model_dir)
    if config.model.init_adapter:
        load_initial_adapter(model, config.model.init_adapter)
    if config.speed.sparse_dropout:
        from lawtune.training.dropout import use_sparse_dropout

        use_sparse_dropout(model)
    if config.speed.fused_lora:
        from lawtune.training.fused_lora import use_fused_lora

        use_fused_lora(model)
    from lawtune.training.checkpointing import auto_layers, checkpoint_layers

    layers = config.speed.checkpoint_layers
    if layers == "auto":  # sized to the longest batch (length-grouped batches start with it)
        longest = max(len(example["input_ids"]) for example in train.examples)
        layers = auto_layers(model.config, args.per_device_train_batch_size, longest, bool(args.bf16),
                             eager=getattr(model.config, "_attn_implementation", None) == "eager")
    checkpointed = checkpoint_layers(model, layers)
    if peft.trainable_token_indices:
        from lawtune.training.token_rows import use_fast_token_rows

        use_fast_token_rows(model)

    if config.model.compile:
        import shutil

        if not torch.cuda.is_available() and not (shutil.which("g++") or shutil.which("c++")):
            raise LawtuneError("model.compile needs a C++ compiler on a CPU (apt install g++); or set model.compile=false")
        # Half of a CPU step is small elementwise ops (norms, rotary, LoRA scaling, dropout); compiling each
        # decoder layer fuses them. In place, so parameter names (and saved adapters) do not change;
        # dynamic shapes so every batch length reuses one compiled graph.
        for layer in getattr(model.get_base_model().get_decoder(), "layers", []):
            layer.compile(dynamic=True)
    counter = TokenCounter()
    callbacks = [cb.MetricsLog(run_dir, counter), cb.CheckpointMarker(), cb.RichProgress(counter),
                 cb.TrimHeap(config.speed.trim_heap_layers)]
    if dev is not None:
        if config.generate_rows:
            from lawtune.training.generation_eval import GenerationEval

            callbacks.insert(0, GenerationEval(run_dir, chat, config.data_config.val_file, config.generate_rows,
                                               config.max_new_tokens, config.max_input_length))
        greater = config.training_args.greater_is_better
        if greater is None:
            greater = "loss" not in config.training_args.metric_for_best_model
        callbacks.append(cb.BestAdapter(run_dir, config.training_args.metric_for_best_model, greater,
                                        config.eval.early_stopping_patience))
    if args.process_index == 0:
        callbacks.append(TensorBoardCallback(tb_writer=SummaryWriter(str(run_dir / TENSORBOARD_DIR))))
    trainer = SFTTrainer(model=model, args=args, train_dataset=train.examples,
                         eval_dataset=dev.examples if dev else None,
                         data_collator=Collator(safe_pad_id(tokenizer, chat.stop_token_ids)), callbacks=callbacks, token_counter=counter,
                         grad_filter=config.speed.grad_filter)
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    trainer.checkpointed_layers = checkpointed  # recorded in run.json
    trainer.attention = getattr(model.config, "_attn_implementation", None)
    trainer.remove_callback(PrinterCallback)  # the rich bar and metrics.jsonl replace the printed dicts
    trainer.remove_callback(ProgressCallback)
    return trainer


def initial_adapter_dir(spec: str) -> Path:
    """The adapter folder `model.init_adapter` names: a run folder's best adapter (else its final one), or an
    adapter folder itself."""
    from lawtune.modeling.runs import is_run_dir, read_run

    path = Path(spec).expanduser().resolve()
    if is_run_dir(path):
        return read_run(path).adapter_dir("best")
    if (path / "adapter_model.safetensors").is_file():
        return path
    raise LawtuneError(f"model.init_adapter={spec}: neither a lawtune run folder nor an adapter folder "
                       "(adapter_model.safetensors)")


def load_initial_adapter(model, spec: str) -> Path:
    """Start the fresh LoRA weights of `model` from a trained adapter's (a second training stage). Every adapter
    weight of the model must be in the file with the same shape, and the file may hold nothing else: a different
    r, other target modules or other trainable tokens is a LawtuneError, never a half-loaded start."""
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    folder = initial_adapter_dir(spec)
    state = load_file(str(folder / "adapter_model.safetensors"))
    own = {name for name, _ in model.named_parameters() if "lora_" in name or "trainable_tokens" in name}
    try:
        result = set_peft_model_state_dict(model, state)
    except RuntimeError as error:  # shapes differ: another r, or another model
        raise LawtuneError(f"model.init_adapter={spec}: its weights do not fit this run's peft_config ({error})") from None
    missing = sorted(name for name in result.missing_keys if name in own)
    if result.unexpected_keys or missing:
        raise LawtuneError(f"model.init_adapter={spec}: it does not match this run's peft_config (not in the file: "
                           f"{missing[:3]}; not in this model: {list(result.unexpected_keys)[:3]})")
    return folder


EAGER_MAX_TOKENS = 1024  # longest training row for which a CPU trains with eager attention


def training_attention(model: ModelSection, longest_row: int = 0) -> str | None:
    """`model.attn_implementation`, else "eager" on a CPU for rows of up to EAGER_MAX_TOKENS tokens: for training
    sequences of a few hundred tokens its batched matmuls beat the CPU flash-attention kernel of "sdpa" (the
    default model, 8 batches: attention forward + backward 0.2 s vs 0.85 s of a 7-9 s profile). Longer rows
    (`max_input_length + max_output_length`, e.g. tool-use prompts of 1,536 tokens) get "sdpa": eager keeps each
    layer's (batch × heads × T × T) attention probabilities for the backward, several GB at T ≈ 1,800 over 18
    layers (one layer, batch 4, T = 1,792: 676 MiB eager vs 237 MiB sdpa). GPUs and remote-code models keep
    their default."""
    import torch

    if model.attn_implementation:
        return model.attn_implementation
    if torch.cuda.is_available() or model.trust_remote_code:
        return None
    return "eager" if longest_row <= EAGER_MAX_TOKENS else "sdpa"


def token_indices(tokens: list[int | str] | None, tokenizer) -> list[int] | None:
    """Token ids for `peft_config.trainable_token_indices` (ids, or token texts like "<end_of_turn>")."""
    if not tokens:
        return None
    ids = []
    for token in tokens:
        if isinstance(token, int):
            if not 0 <= token < len(tokenizer):
                raise LawtuneError(f"peft_config.trainable_token_indices: id {token} is outside the vocabulary (0..{len(tokenizer) - 1})")
            ids.append(token)
            continue
        found = tokenizer.convert_tokens_to_ids(token)
        if found is None or found == tokenizer.unk_token_id and token != tokenizer.unk_token:
            raise LawtuneError(f"peft_config.trainable_token_indices: {token!r} is not a token of this tokenizer; "
                               "give a token text as the tokenizer spells it (e.g. <end_of_turn>) or an id")
        ids.append(found)
    return sorted(set(ids))


# Trainer arguments lawtune always sets, and why: a config that asks for another value is told so
# (overridden_arguments) and run.json records it.
FIXED_ARGS = {
    "report_to": ([], "lawtune writes RUN/metrics.jsonl and RUN/tensorboard itself; no other tracker is wired in"),
    "disable_tqdm": (True, "lawtune draws its own progress bar"),
    "prediction_loss_only": (True, "evaluation is the dev loss (model answers: generate_rows)"),
    "remove_unused_columns": (False, "lawtune's collator reads every column it encoded"),
    "label_names": (["labels"], "lawtune's batches carry the supervised tokens as `labels`"),
}


def overridden_arguments(config: TrainConfig, has_dev: bool) -> dict[str, dict]:
    """The training_args values of `config` that training does not use as given: {key: {given, used, why}}."""
    given = config.training_args.model_dump()
    changed = {}
    for key, (used, why) in FIXED_ARGS.items():
        if key not in given:
            continue
        value = given[key]
        if key == "report_to":  # "none" and [] say the same; TensorBoard is written anyway
            asked = [value] if isinstance(value, str) else list(value)
            if set(asked) <= {"none", "tensorboard"}:
                continue
        elif value == used:
            continue
        changed[f"training_args.{key}"] = {"given": value, "used": used, "why": why}
    if not has_dev and given["eval_strategy"] != "no":
        changed["training_args.eval_strategy"] = {"given": given["eval_strategy"], "used": "no",
                                                  "why": "no data_config.val_file to evaluate on"}
    return changed


def training_arguments(config: TrainConfig, run_dir: Path, has_dev: bool):
    """Seq2SeqTrainingArguments from the config, with lawtune's fixed choices; returns (args, precision)."""
    import torch
    from transformers import Seq2SeqTrainingArguments

    values = config.training_args.model_dump(exclude=LAWTUNE_READS)
    values.update(output_dir=str(run_dir), **{key: used for key, (used, _why) in FIXED_ARGS.items()})
    if not torch.cuda.is_available():
        # use_cpu is what makes transformers/accelerate form a gloo process group under torchrun on a CPU.
        values.update(use_cpu=True, dataloader_pin_memory=False)
    bf16 = values["bf16"]
    if bf16 == "auto":
        bf16 = bf16_supported()
    values["bf16"] = bool(bf16)
    if not has_dev:
        values["eval_strategy"] = "no"
        if values.get("save_strategy") == "best":
            raise LawtuneError("training_args.save_strategy=best needs data_config.val_file")
    if values.get("deepspeed") and not Path(values["deepspeed"]).is_file():
        raise LawtuneError(f"training_args.deepspeed file {values['deepspeed']} not found")
    try:
        args = Seq2SeqTrainingArguments(**values)
    except ImportError as error:
        raise LawtuneError(f"a library the config asks for is missing: {error}") from error
    except (ValueError, TypeError) as error:
        raise LawtuneError(f"training_args rejected by transformers: {str(error).splitlines()[0]}") from error
    precision = "bf16-autocast" if args.bf16 else ("fp16-autocast" if args.fp16 else "fp32")
    if torch.cuda.is_available() is False and args.fp16:
        raise LawtuneError("training_args.fp16 needs a CUDA GPU; use bf16: auto on a CPU")
    return args, precision
