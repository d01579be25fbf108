"""The dSprites VAE in the benchmark: its hand-written reference step is the project's loss, its FLOP count
is the network's closed form, and ``--models dsprites-vae`` runs only that part (tiny sizes here)."""

import copy
import json

import pytest
import torch

from infodropout.train import bench
from infodropout.train.bench import VAE_PRIORS, build_vae, run_bench, step_flops, vae_handwritten_loss
from infodropout.train.cli import main
from infodropout.train.engine import TrainStep, make_optimizer, training_context

from common import assert_close

CPU = torch.device("cpu")


def _images(batch):
    g = torch.Generator().manual_seed(0)
    return (torch.rand(batch, 1, 64, 64, generator=g) < 0.1).float()


@pytest.mark.parametrize("prior", list(VAE_PRIORS))
def test_the_handwritten_vae_step_has_the_projects_loss_and_gradients(prior):
    """Same parameters, same noise (the same draws from the same seed): the same per-example negative ELBO
    and the same gradient for every parameter, the prior's included."""
    torch.manual_seed(0)
    ib = build_vae(prior, CPU, num_data=1000)
    with torch.no_grad():  # a prior away from its initial values, so that every term of its KL matters
        for p in ib.model.priors.parameters():
            p.add_(0.3 * torch.randn_like(p))
    x = _images(4)
    hand = copy.deepcopy(ib)
    step = TrainStep(ib, make_optimizer("sgd", ib.parameters(), 0.0), 1000, CPU)
    torch.manual_seed(1)
    with training_context(ib):
        step.forward_backward(x, None)
    torch.manual_seed(1)
    loss = vae_handwritten_loss(hand, x)
    loss.backward()
    assert_close(loss.item(), step.read()["loss"], rtol=1e-5)
    for (name, a), b in zip(ib.named_parameters(), hand.parameters(), strict=True):
        assert_close(b.grad, a.grad, rtol=1e-4, atol=1e-6, msg=name)


def _conv_flops(c_in, c_out, side_out, k=4):
    return 2 * c_in * c_out * k * k * side_out * side_out


def test_the_bench_counts_the_closed_form_flops_of_a_vae_step():
    """Forward: 2 FLOPs per multiply-add of every convolution (4x4 kernels), transposed convolution and
    linear layer; backward: the same again for the input gradient and for the weight gradient, except the
    first convolution, whose input (the images) needs no gradient."""
    batch, z = 3, 10
    first = _conv_flops(1, 32, 32)
    encoder = first + _conv_flops(32, 32, 16) + _conv_flops(32, 64, 8) + _conv_flops(64, 64, 4)
    encoder += 2 * 1024 * 256 + 2 * (2 * 256 * z)  # fc, then the latent's two heads (f and alpha)
    decoder = 2 * z * 256 + 2 * 256 * 1024
    # a transposed convolution costs what the convolution it transposes does: its input side is that one's output
    decoder += _conv_flops(64, 64, 4) + _conv_flops(64, 32, 8) + _conv_flops(32, 32, 16) + _conv_flops(32, 1, 32)
    forward = encoder + decoder
    ib = build_vae("factorised", CPU)
    step = TrainStep(ib, make_optimizer("adam", ib.parameters(), 1e-3), 1000, CPU)
    assert step_flops(step, _images(batch)) == batch * (3 * forward - first)
    assert all(p.grad is None for p in ib.parameters())  # what the count left behind is cleared


def test_bench_times_only_the_dsprites_vae_and_saves_its_figures(tmp_path, capsys):
    result = run_bench(
        "cpu",
        tmp_path,
        models=["dsprites-vae"],
        priors=["factorised", "normal"],
        repeats=1,
        warmup=1,
        vae_batch=2,
        gemm_size=64,
    )
    saved = json.loads((tmp_path / "bench.json").read_text())
    assert saved == json.loads(json.dumps(result))
    assert list(saved["models"]) == ["dsprites-vae"] and saved["threads"] >= 1
    vae = saved["models"]["dsprites-vae"]
    assert list(vae["priors"]) == ["factorised", "normal"]
    for r in vae["priors"].values():
        assert r["ratio_vs_handwritten"] == pytest.approx(r["median_ms"]["project"] / r["median_ms"]["handwritten"])
    cpu = vae["cpu"]
    precisions = {"fp32", "bf16"} if bench.cpu_has_bf16() else {"fp32"}
    threads = {1, min(2, bench.available_cores())}
    assert {(v["precision"], v["layout"], v["threads"]) for v in cpu["variants"].values()} == {
        (p, layout, n) for p in precisions for layout in ("contiguous", "channels-last") for n in threads
    }
    peak = cpu["gemm_gflops_one_core"]["fp32"]
    for v in cpu["variants"].values():
        assert v["gflops"] == pytest.approx(cpu["flops_per_step"] / (v["median_ms"] / 1000) / 1e9)
        assert v["fraction_of_peak"] == pytest.approx(v["gflops"] / (v["threads"] * peak))
    table = {(v["precision"], v["layout"], v["threads"]): v["median_ms"] for v in cpu["variants"].values()}
    layouts = cpu["speedups"]["channels-last over contiguous"]
    assert layouts["fp32, 1"] == pytest.approx(table["fp32", "contiguous", 1] / table["fp32", "channels-last", 1])
    if "bf16" in precisions:
        bf16 = cpu["speedups"]["bf16 over fp32"]
        assert bf16["contiguous, 1"] == pytest.approx(table["fp32", "contiguous", 1] / table["bf16", "contiguous", 1])
    figures = {c["figure"] for c in saved["targets"]}
    assert figures == {"dsprites-vae factorised project / hand-written", "dsprites-vae normal project / hand-written"}
    out = capsys.readouterr().out
    assert "dsprites-vae CPU figures" in out
    assert ("bf16 over fp32" in out) == ("bf16" in precisions)


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--models", "resnet"], "models=['resnet']: expected names from ('mlp', 'allcnn32', 'dsprites-vae')"),
        (
            ["--models", "dsprites-vae", "--priors", "factorised,laplace"],
            "priors=['laplace']: expected names from ('factorised', 'correlated', 'correlated-low-rank', 'normal')",
        ),
    ],
)
def test_bench_refuses_an_unknown_part_or_prior_before_timing(flags, message, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(bench, "bench_vae_priors", lambda *a, **k: pytest.fail("the benchmark ran"))
    assert main(["bench", "--device", "cpu", "--out", str(tmp_path), *flags]) == 2
    assert capsys.readouterr().err == f"infodropout bench: {message}\n"
    assert not (tmp_path / "bench.json").exists()
