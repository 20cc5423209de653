"""linear_cross_entropy: the loss of F.cross_entropy(hidden @ W.T), its gradient computed in the forward pass."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from lawtune.training.vocab_loss import _chunk_loss, linear_cross_entropy


def _problem(rows=37, hidden=16, vocab=500, seed=0, sharpness=1.0):
    generator = torch.Generator().manual_seed(seed)
    weight = torch.randn(vocab, hidden, generator=generator)
    states = torch.randn(rows, hidden, generator=generator) * sharpness
    targets = torch.randint(0, vocab, (rows,), generator=generator)
    return states, weight, targets


def _reference(states, weight, targets):
    states = states.clone().requires_grad_()
    loss = F.cross_entropy(states @ weight.T, targets, reduction="sum")
    loss.backward()
    return loss.detach(), states.grad


@pytest.mark.parametrize("chunk_rows", [1024, 8, 1])
def test_unfiltered_equals_cross_entropy_in_value_and_gradient(chunk_rows):
    states, weight, targets = _problem()
    expected_loss, expected_grad = _reference(states, weight, targets)
    states.requires_grad_()
    loss = linear_cross_entropy(states, weight, targets, filter_eps=0.0, chunk_rows=chunk_rows)
    (loss * 0.5).backward()  # the upstream gradient scales the stored one
    torch.testing.assert_close(loss.detach(), expected_loss, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(states.grad, 0.5 * expected_grad, rtol=1e-4, atol=1e-6)


def test_filter_skips_columns_keeps_the_loss_and_bounds_the_gradient_error():
    states, weight, targets = _problem(sharpness=4.0)  # peaked softmax, as a trained LM's
    expected_loss, expected_grad = _reference(states, weight, targets)
    grad = torch.empty_like(states)
    loss, columns = _chunk_loss(states, weight, targets, filter_eps=1e-4, grad=grad)
    assert columns < weight.shape[0] // 2, "most columns are below 1e-4 in every row"
    torch.testing.assert_close(loss, expected_loss, rtol=1e-5, atol=1e-5)
    # Each row loses at most (vocab × eps) probability mass, each dropped term weighted by a weight row.
    bound = weight.shape[0] * 1e-4 * weight.norm(dim=1).max()
    assert ((grad - expected_grad).norm(dim=1) <= bound).all()
    assert not torch.allclose(grad, expected_grad)


def test_no_gradient_work_without_autograd_and_edge_cases():
    states, weight, targets = _problem()
    with torch.no_grad():
        value = linear_cross_entropy(states, weight, targets)
    torch.testing.assert_close(value, _reference(states, weight, targets)[0], rtol=1e-5, atol=1e-5)
    empty = linear_cross_entropy(states[:0].clone().requires_grad_(), weight, targets[:0])
    assert float(empty) == 0.0
    with pytest.raises(ValueError, match="frozen"):
        linear_cross_entropy(states, weight.clone().requires_grad_(), targets)


def test_under_bf16_autocast_the_projections_run_in_bf16_on_one_cached_copy():
    from lawtune.training import vocab_loss

    states, weight, targets = _problem(rows=64, hidden=64, vocab=2000, sharpness=0.5)
    expected_loss, expected_grad = _reference(states, weight, targets)
    states.requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = linear_cross_entropy(states, weight, targets, filter_eps=0.0)
    loss.backward()
    copy = vocab_loss._BF16_COPIES[id(weight)][2]
    assert copy.dtype == torch.bfloat16
    # bf16 rounding of the inputs and logits: close, not equal (an fp32 head would match to 1e-5)
    assert not torch.allclose(loss.detach(), expected_loss, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(loss.detach(), expected_loss, rtol=1e-2, atol=1e-2)
    cosine = F.cosine_similarity(states.grad.flatten(), expected_grad.flatten(), dim=0)
    assert cosine > 0.999
    with torch.autocast("cpu", dtype=torch.bfloat16):
        linear_cross_entropy(states, weight, targets)
    assert vocab_loss._BF16_COPIES[id(weight)][2] is copy  # converted once
    weight.mul_(2)  # changed in place: converted again
    with torch.autocast("cpu", dtype=torch.bfloat16):
        linear_cross_entropy(states, weight, targets)
    assert vocab_loss._BF16_COPIES[id(weight)][2] is not copy


def test_scratch_buffers_are_reused_across_calls_and_results_never_alias_them():
    from lawtune.training import vocab_loss

    big, weight, targets = _problem(rows=40, sharpness=4.0)
    small = big[:7].clone()
    results = []
    for states, rows in ((big, targets), (small, targets[:7])):
        states = states.clone().requires_grad_()
        loss = linear_cross_entropy(states, weight, rows, filter_eps=1e-4)
        loss.backward()
        results.append((states, rows, loss.detach().clone(), states.grad.clone(), loss, states.grad))
        if len(results) == 1:
            logits_buffer = vocab_loss._WORKSPACE.buffers["logits"]
            assert logits_buffer.numel() == 40 * weight.shape[0]
    assert vocab_loss._WORKSPACE.buffers["logits"] is logits_buffer  # the smaller call used the same memory
    for states, rows, loss_then, grad_then, loss_now, grad_now in results:
        torch.testing.assert_close(loss_now, loss_then, rtol=0, atol=0)  # not overwritten by a later call
        torch.testing.assert_close(grad_now, grad_then, rtol=0, atol=0)
        expected_loss, _ = _reference(states.detach(), weight, rows)
        torch.testing.assert_close(loss_now, expected_loss, rtol=1e-5, atol=1e-5)


def test_release_buffers_frees_the_workspace_and_the_head_copy():
    from lawtune.training import vocab_loss

    weight = torch.randn(300, 16)
    hidden, targets = torch.randn(5, 16, requires_grad=True), torch.randint(0, 300, (5,))
    linear_cross_entropy(hidden, weight, targets, bf16=True).backward()
    assert vocab_loss._WORKSPACE.buffers and vocab_loss._BF16_COPIES
    vocab_loss.release_buffers()
    assert not vocab_loss._WORKSPACE.buffers and not vocab_loss._BF16_COPIES
    again = linear_cross_entropy(hidden, weight, targets, bf16=True)  # and the next call builds them anew
    assert torch.isfinite(again)


@pytest.mark.parametrize(("rows", "bf16", "sharpness"), [(100, False, 6.0), (100, True, 6.0), (3, False, 0.5)])
def test_kept_columns_written_in_place_give_the_bits_of_fresh_buffers(monkeypatch, rows, bf16, sharpness):
    """The filtered backward gathers the kept columns over the logits' own memory and the kept head rows into
    its tail (no extra buffers); it must give exactly what gathering into fresh tensors gives. 100 rows: several
    gather slices, head rows in the tail; 3 rows: the tail is too short, the head rows get a buffer of their own."""
    from lawtune.training import vocab_loss

    states, weight, targets = _problem(rows=rows, hidden=64, vocab=4000, sharpness=sharpness)
    index = torch.tensor([3, 42])

    def run():
        vocab_loss.release_buffers()
        hidden = states.clone().requires_grad_()
        values = weight[index].clone().add_(0.01).requires_grad_()
        loss = linear_cross_entropy(hidden, weight, targets, filter_eps=1e-4, rows=(index, values), bf16=bf16)
        loss.backward()
        return loss.detach(), hidden.grad, values.grad

    in_place = run()
    in_tail = vocab_loss._WORKSPACE.buffers.get("head") is None
    assert in_tail == (rows == 100)
    monkeypatch.setattr(vocab_loss, "_keep_columns_in_place", lambda logits, columns: logits.index_select(1, columns))
    monkeypatch.setattr(vocab_loss, "_head_rows_buffer", lambda logits, kept, head, used: head.new_empty(used, head.shape[1]))
    fresh = run()
    for mine, theirs in zip(in_place, fresh):
        assert torch.equal(mine, theirs)
    kept_share = vocab_loss._chunk_loss(states, weight, targets, 1e-4, torch.empty_like(states))[1] / weight.shape[0]
    assert 0 < kept_share < 0.9  # the filter kept some columns and dropped others: the gather did real work
