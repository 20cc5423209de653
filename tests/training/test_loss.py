"""The supervised-positions-only loss equals the model's own full-logits loss on the same batch, on every path."""

from __future__ import annotations

import pytest
import torch

from lawtune.modeling.chat import ChatFormat, load_template
from lawtune.modeling.loading import load_tokenizer
from lawtune.training.data import Collator, encode_rows
from lawtune.training.loss import accepts_logits_mask, best_head_path, plain_output_head, supervised_loss

from training_helpers import corpus_conversations


@pytest.fixture(scope="module")
def model_and_batch(tiny_model_dir):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    tokenizer = load_tokenizer(tiny_model_dir)
    chat = ChatFormat(tokenizer, load_template("gemma"))
    rows = [row["conversations"] for row in corpus_conversations()[:6]]
    examples = encode_rows(rows, chat, 40, 30).examples
    batch = Collator(tokenizer.pad_token_id)(examples)  # uneven lengths: real padding in the batch
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", init_lora_weights=False))
    return model, batch


@pytest.mark.parametrize("head_path", ["fused", "sliced", "full"])
def test_loss_equals_the_models_own_loss_and_gradients(model_and_batch, head_path):
    model, batch = model_and_batch
    assert accepts_logits_mask(model)
    assert (batch["attention_mask"] == 0).any(), "the batch should contain padding"
    reference = model(**batch).loss
    reference.backward()
    ref_grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    model.zero_grad()
    ours, count = supervised_loss(model, batch, head_path=head_path)  # grad_filter 0: the exact gradient
    ours.backward()
    assert count == int((batch["labels"][:, 1:] != -100).sum())
    torch.testing.assert_close(ours, reference, rtol=1e-5, atol=1e-6)
    for name, param in model.named_parameters():
        if param.requires_grad:
            torch.testing.assert_close(param.grad, ref_grads[name], rtol=1e-4, atol=1e-7)
    model.zero_grad()
    assert isinstance(model.get_base_model().lm_head, torch.nn.Linear), "the fused path puts the head back"


def test_fused_path_is_chosen_only_for_a_frozen_plain_head(tiny_model_dir, model_and_batch):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model, _ = model_and_batch
    assert best_head_path(model) == "fused"
    trained_head = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model_dir),
                                  LoraConfig(r=4, target_modules=["q_proj"], modules_to_save=["lm_head"]))
    assert plain_output_head(trained_head) is None and best_head_path(trained_head) == "sliced"
    capped = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    capped.config.final_logit_softcapping = 30.0  # logits change after the head: not a plain projection
    assert best_head_path(capped) == "sliced"


def test_filtered_gradient_stays_close_to_the_exact_one(model_and_batch):
    model, batch = model_and_batch
    grads = {}
    for grad_filter in (0.0, 2e-3):  # the random tiny model's softmax is flat: ~1/600 per column
        model.zero_grad()
        loss, _ = supervised_loss(model, batch, head_path="fused", grad_filter=grad_filter)
        loss.backward()
        grads[grad_filter] = torch.cat([p.grad.flatten() for p in model.parameters() if p.requires_grad])
    model.zero_grad()
    exact, filtered = grads[0.0], grads[2e-3]
    assert not torch.equal(exact, filtered), "a 2e-3 filter drops some columns of the tiny model's softmax"
    assert torch.nn.functional.cosine_similarity(exact, filtered, dim=0) > 0.9


def test_num_items_gives_a_sum_over_the_accumulated_batch(model_and_batch):
    model, batch = model_and_batch
    with torch.no_grad():
        mean, count = supervised_loss(model, batch)
        summed, _ = supervised_loss(model, batch, num_items=2 * count)
        unsliced, _ = supervised_loss(model, batch, head_path="full")
        fused, _ = supervised_loss(model, batch, head_path="fused", grad_filter=1e-3)
    torch.testing.assert_close(summed, mean / 2)
    torch.testing.assert_close(unsliced, mean, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(fused, mean, rtol=1e-5, atol=1e-6)  # the filter never touches the loss value


def test_compiled_layers_give_the_same_loss(tiny_model_dir, model_and_batch):
    """`model.compile: true` compiles each decoder layer in place; the loss and parameter names do not change."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    _, batch = model_and_batch
    torch.manual_seed(0)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model_dir),
                           LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", init_lora_weights=False))
    names = [name for name, _ in model.named_parameters()]
    with torch.no_grad():
        eager, _ = supervised_loss(model, batch)
    for layer in model.get_base_model().get_decoder().layers:
        layer.compile(dynamic=True)
    compiled, _ = supervised_loss(model, batch)
    compiled.backward()
    torch.testing.assert_close(compiled.detach(), eager, rtol=1e-4, atol=1e-5)
    assert [name for name, _ in model.named_parameters()] == names


@pytest.mark.parametrize("grad_filter", [0.0, 1e-9])
def test_trainable_token_rows_keep_the_fused_path_with_peft_s_own_loss_and_gradients(tiny_model_dir, model_and_batch,
                                                                                      grad_filter):
    """PEFT trainable tokens (the end-of-turn row): the fast embedding and fused head give PEFT's numbers."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from lawtune.training.token_rows import use_fast_token_rows

    _, batch = model_and_batch
    tokenizer = load_tokenizer(tiny_model_dir)
    end = tokenizer.convert_tokens_to_ids("<end_of_turn>")
    torch.manual_seed(0)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model_dir),
                           LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", init_lora_weights=False,
                                      trainable_token_indices=[end]))
    delta = model.get_base_model().get_input_embeddings().token_adapter.trainable_tokens_delta["default"]
    with torch.no_grad():
        delta.add_(torch.randn_like(delta))  # a trained row that differs from the frozen one
    assert best_head_path(model) == "fused"
    reference = model(**batch).loss  # PEFT's own forward: full weight rebuilt with the trained row
    reference.backward()
    ref_grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    model.zero_grad()
    assert use_fast_token_rows(model) == 1
    ours, _ = supervised_loss(model, batch, head_path="fused", grad_filter=grad_filter)
    ours.backward()
    torch.testing.assert_close(ours, reference, rtol=1e-5, atol=1e-6)
    assert delta.grad is not None and delta.grad.abs().sum() > 0
    for name, param in model.named_parameters():
        if param.requires_grad:
            torch.testing.assert_close(param.grad, ref_grads[name], rtol=1e-4, atol=1e-6)
