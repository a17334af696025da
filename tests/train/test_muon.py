"""Muon for hidden matrices, AdamW for the rest: the update rules, the grouping, and a state round trip."""

from __future__ import annotations

import math

import pytest
import torch

from tests.conftest import tiny_model_config
from tests.train.conftest import REPO
from videopanda.config import load_config
from videopanda.model import build_model
from videopanda.train.config import OptimConfig, StageConfig, TrainConfig
from videopanda.train.muon import MuonAdamW, orthogonalize
from videopanda.train.optim import build_optimizer
from videopanda.train.stages import apply_trainable
from videopanda.train.task import TrainingTask


@pytest.mark.parametrize("shape", [(48, 16), (16, 48), (24, 24)])
def test_orthogonalize_brings_every_singular_value_near_one(shape):
    # columns scaled over 1.5 decades: singular values 10 to 180 times apart (5 iterations lift the smallest ones
    # about 500x, enough for a gradient's spectrum, not for an exactly singular matrix)
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(0)) * torch.logspace(-0.5, 1, shape[1])
    assert torch.linalg.svdvals(x).max() / torch.linalg.svdvals(x).min() > 9
    s = torch.linalg.svdvals(orthogonalize(x))
    assert s.min() > 0.5 and s.max() < 1.25


def test_orthogonalize_batched_equals_one_by_one():
    x = torch.randn(3, 20, 12, generator=torch.Generator().manual_seed(1))
    batched = orthogonalize(x)
    for i in range(3):
        torch.testing.assert_close(batched[i], orthogonalize(x[i]), atol=1e-5, rtol=1e-5)


def test_adamw_groups_follow_torch_adamw():
    torch.manual_seed(0)
    a, b = torch.randn(5, 3, requires_grad=True), torch.randn(7, requires_grad=True)
    a2, b2 = (t.detach().clone().requires_grad_() for t in (a, b))
    ours = MuonAdamW([{"params": [a], "weight_decay": 0.1}, {"params": [b]}], lr=1e-2, betas=(0.9, 0.99))
    ref = torch.optim.AdamW(
        [{"params": [a2], "weight_decay": 0.1}, {"params": [b2], "weight_decay": 0.0}], lr=1e-2, betas=(0.9, 0.99)
    )
    for step in range(5):
        for opt, (x, y) in ((ours, (a, b)), (ref, (a2, b2))):
            opt.zero_grad()
            ((x.sin() * (step + 1)).sum() + (y**2).sum()).backward()
            opt.step()
    torch.testing.assert_close(a, a2)
    torch.testing.assert_close(b, b2)


@pytest.mark.parametrize("ns_steps", [5, 3])
def test_muon_step_is_the_scaled_orthogonalised_nesterov_momentum(ns_steps):
    torch.manual_seed(0)
    w = torch.randn(24, 8, requires_grad=True)
    start = w.detach().clone()
    opt = MuonAdamW([{"params": [w], "muon": True}], lr=0.01, momentum=0.9, ns_steps=ns_steps)
    grads = [torch.randn(24, 8) for _ in range(2)]
    w.grad = grads[0]
    opt.step()
    # first step: buffer = g, Nesterov update = g + 0.9 g; orthogonalisation ignores the scale
    expected = start - 0.01 * 0.2 * math.sqrt(24) * orthogonalize(grads[0], ns_steps)
    torch.testing.assert_close(w.detach(), expected)
    w.grad = grads[1]
    opt.step()
    buf = 0.9 * grads[0] + grads[1]
    expected = expected - 0.01 * 0.2 * math.sqrt(24) * orthogonalize(grads[1] + 0.9 * buf, ns_steps)
    torch.testing.assert_close(w.detach(), expected)


def test_groups_and_orientations_batched_together_each_take_their_own_update():
    """One Newton-Schulz batch serves every group's matrices of a shape, tall ones transposed: each param still moves
    by its own orthogonalised momentum, at its own group's learning rate and weight decay."""
    torch.manual_seed(0)
    wide, tall, conv = torch.randn(8, 24), torch.randn(24, 8), torch.randn(8, 4, 3, 2)  # conv: the matrix (8, 24)
    params = [p.clone().requires_grad_() for p in (wide, tall, conv)]
    groups = [
        {"params": [params[0]], "muon": True, "lr": 0.01},
        {"params": [params[1], params[2]], "muon": True, "lr": 0.03, "weight_decay": 0.1},
    ]
    opt = MuonAdamW(groups, momentum=0.9)
    grads = [torch.randn_like(p) for p in params]
    for p, g in zip(params, grads, strict=True):
        p.grad = g
    opt.step()
    scale = 0.2 * math.sqrt(24)
    # first step: Nesterov momentum = 1.9 g, and orthogonalisation ignores the scale. bf16 products batched with
    # other matrices round a little differently from one matrix alone: updates (about 0.01) agree to 5e-4, while a
    # wrong learning rate, weight decay (0.003 |p|) or orientation would be off by more.
    close = dict(atol=5e-4, rtol=0)
    torch.testing.assert_close(params[0].detach(), wide - 0.01 * scale * orthogonalize(grads[0]), **close)
    want = tall * (1 - 0.03 * 0.1) - 0.03 * scale * orthogonalize(grads[1])
    torch.testing.assert_close(params[1].detach(), want, **close)
    want = conv * (1 - 0.03 * 0.1) - 0.03 * scale * orthogonalize(grads[2].flatten(1)).view_as(conv)
    torch.testing.assert_close(params[2].detach(), want, **close)


def test_muon_ns_steps_comes_from_the_config_and_must_be_positive():
    _, opt = _optimizer(muon_ns_steps=3)
    assert {g["ns_steps"] for g in opt.param_groups if g["muon"]} == {3}
    with pytest.raises(ValueError, match="muon_ns_steps must be >= 1"):
        OptimConfig(optimizer="muon", muon_ns_steps=0)


def test_muon_rejects_a_weight_that_is_not_a_matrix():
    with pytest.raises(ValueError, match=r"matrices only; group stab/muon has \[\(5,\)\]"):
        MuonAdamW([{"params": [torch.zeros(5, requires_grad=True)], "muon": True, "name": "stab/muon"}])


def test_a_convolution_weight_moves_as_its_out_by_in_times_kernel_matrix():
    torch.manual_seed(0)
    w = torch.randn(6, 3, 2, 2, requires_grad=True)
    start = w.detach().clone()
    opt = MuonAdamW([{"params": [w], "muon": True}], lr=0.01)
    w.grad = torch.randn(6, 3, 2, 2)
    opt.step()
    expected = start - 0.01 * 0.2 * math.sqrt(12) * orthogonalize(w.grad.reshape(6, 12)).view(6, 3, 2, 2)
    torch.testing.assert_close(w.detach(), expected)


def _optimizer(task=None, **optim):
    if task is None:
        task = TrainingTask(build_model(tiny_model_config()))
        apply_trainable(task, ["stab", "projector", "llm"])
    return task, build_optimizer(task, StageConfig(lr=1e-3), OptimConfig(optimizer="muon", **optim))


def test_muon_takes_the_linear_weights_but_not_embeddings_head_or_convolutions():
    task, opt = _optimizer(muon_lr_scale=2.0)
    model = task.model
    groups = {id(p): g for g in opt.param_groups for p in g["params"]}
    llm = model.model.language_model
    assert groups[id(llm.layers[0].self_attn.q_proj.weight)]["name"] == "llm/muon"
    assert groups[id(llm.layers[0].mlp.down_proj.weight)]["muon"]
    assert groups[id(llm.layers[0].self_attn.q_proj.weight)]["lr"] == 2e-3
    for p in (llm.embed_tokens.weight, model.lm_head.weight, model.model.video_tokenizer.patch_embedding.proj.weight):
        assert not groups[id(p)]["muon"] and groups[id(p)]["lr"] == 1e-3
    assert any(g["name"] == "stab/muon" for g in opt.param_groups)
    assert len(groups) == sum(p.requires_grad for p in task.parameters())


def test_state_round_trip_gives_the_same_next_step():
    torch.manual_seed(0)
    task, opt = _optimizer()
    params = [p for p in task.parameters() if p.requires_grad]

    def step(optimizer):
        for i, p in enumerate(params):
            p.grad = torch.full_like(p, 1e-3).add_(torch.sin(torch.arange(p.numel()).view_as(p) + i))
        optimizer.step()

    step(opt)
    saved = ({k: v.clone() for k, v in task.state_dict().items()}, opt.state_dict())
    step(opt)
    after = [p.detach().clone() for p in params]
    task.load_state_dict(saved[0])
    _, fresh = _optimizer(task)
    fresh.load_state_dict(saved[1])
    step(fresh)
    for p, q in zip(params, after, strict=True):
        torch.testing.assert_close(p.detach(), q)


def test_muon_under_deepspeed_is_a_clear_config_error():
    zero2 = "distributed.deepspeed=configs/deepspeed/zero2.json"
    with pytest.raises(ValueError, match="optim.optimizer=adamw"):
        load_config(TrainConfig, REPO / "configs/train/tiny_finetune.yaml", [zero2])
    cfg = load_config(
        TrainConfig,
        REPO / "configs/train/tiny_finetune.yaml",
        [zero2, "optim.optimizer=adamw"],
    )
    assert cfg.optim.optimizer == "adamw"


def test_muon_convs_adds_the_dense_convolutions_but_not_the_depthwise_ones():
    task, opt = _optimizer(muon_convs=True)
    groups = {id(p): g for g in opt.param_groups for p in g["params"]}
    stab = task.model.model.video_tokenizer
    assert groups[id(stab.patch_embedding.proj.weight)]["muon"]
    assert not groups[id(stab.lste.dpe.weight)]["muon"]  # depthwise: groups == channels
