"""The schedules equal torch's own schedulers step by step."""

import pytest
import torch

from infodropout.train.schedules import beta_at, lr_factor, set_lr


def _torch_lrs(make_scheduler, steps, per_epoch=None):
    param = torch.nn.Parameter(torch.zeros(()))
    optim = torch.optim.SGD([param], lr=1.0)
    scheduler = make_scheduler(optim)
    lrs = []
    for step in range(steps):
        lrs.append(optim.param_groups[0]["lr"])
        optim.step()
        if per_epoch is None or (step + 1) % per_epoch == 0:
            scheduler.step()
    return lrs


def test_step_schedule_is_multisteplr_over_epochs():
    per_epoch, epochs = 7, 20
    expected = _torch_lrs(
        lambda o: torch.optim.lr_scheduler.MultiStepLR(o, [5, 9, 15], 0.1), per_epoch * epochs, per_epoch
    )
    ours = [lr_factor("step", s, per_epoch * epochs, per_epoch, [5, 9, 15], 0.1) for s in range(per_epoch * epochs)]
    assert ours == pytest.approx(expected, rel=1e-12)


def test_cosine_schedule_is_cosineannealinglr_per_step():
    total = 53
    expected = _torch_lrs(lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, total), total)
    ours = [lr_factor("cosine", s, total, 10) for s in range(total)]
    assert ours == pytest.approx(expected, rel=1e-9, abs=1e-12)


def test_one_cycle_schedule_is_onecyclelr():
    total = 97
    expected = _torch_lrs(
        lambda o: torch.optim.lr_scheduler.OneCycleLR(o, 1.0, total_steps=total, cycle_momentum=False), total
    )
    ours = [lr_factor("one-cycle", s, total, 10) for s in range(total)]
    assert ours == pytest.approx(expected, rel=1e-9, abs=1e-12)


def test_constant_and_unknown():
    assert lr_factor("constant", 123, 1000, 10) == 1.0
    with pytest.raises(ValueError, match="schedule='linear'"):
        lr_factor("linear", 0, 10, 1)


def test_beta_warmup_is_linear_then_constant():
    assert [beta_at(s, 2.0, 4) for s in range(7)] == [0.0, 0.5, 1.0, 1.5, 2.0, 2.0, 2.0]
    assert beta_at(0, 2.0, 0) == 2.0


def test_set_lr_fills_tensor_learning_rates_in_place():
    param = torch.nn.Parameter(torch.zeros(()))
    optim = torch.optim.Adam([param], lr=torch.tensor(0.1))
    lr_tensor = optim.param_groups[0]["lr"]
    set_lr(optim, [0.1], 0.5)
    assert optim.param_groups[0]["lr"] is lr_tensor and lr_tensor.item() == pytest.approx(0.05)
    plain = torch.optim.SGD([param], lr=0.1)
    set_lr(plain, [0.1], 0.25)
    assert plain.param_groups[0]["lr"] == pytest.approx(0.025)
