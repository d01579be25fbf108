"""One run on several processes (torchrun, gloo on the CPU): equivalences with one process.

The pieces are checked in this process by playing the ranks one after the other (noise, gradients,
loader shards, evaluation); the whole is checked by real launches: two gloo processes under torchrun
against one process, resume across world sizes, an agreed Ctrl-C, a killed rank and a hung one.
"""

import copy
import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from infodropout.guides.layers import BinaryDropout, GaussianDropout, GaussianLatent, InformationDropout, dropout
from infodropout.guides.noise import MultiplicativeLogNormal, Normal
from infodropout.models.zoo import build_network
from infodropout.train import distributed
from infodropout.train.checkpoint import load_checkpoint
from infodropout.train.cli import main
from infodropout.train.config import resolve
from infodropout.train.data import DeviceLoader, DSprites, DSpritesLoader, RandomCrop, RandomHorizontalFlip
from infodropout.train.data.loader import Compose, row_block
from infodropout.train.distributed import World, shard
from infodropout.train.elbo import ELBOModule
from infodropout.train.run import Interrupted, Trainer

from common import assert_close

WORKER = Path(__file__).with_name("dist_worker.py")
TORCH_ENV = distributed.ENVIRONMENT


@pytest.fixture(autouse=True)
def _no_torchrun_environment(monkeypatch):
    for name in TORCH_ENV:
        monkeypatch.delenv(name, raising=False)


# -- the pieces, one rank after another in this process ---------------------------------------------------------


def _as_ranks(world_size, batch, draw):
    """``draw(rows)`` for each rank's block of ``batch`` inside its shard, from the same random state;
    the blocks concatenated, and the random state after the last rank (the state is then restored)."""
    state, parts = torch.get_rng_state(), []
    total = len(batch)
    for rank in range(world_size):
        torch.set_rng_state(state)
        start, stop = row_block(total, rank, world_size)
        with shard(start, total):
            parts.append(draw(batch[start:stop]))
    after = torch.get_rng_state()
    torch.set_rng_state(state)
    return torch.cat(parts), after


def _once(batch, draw):
    state = torch.get_rng_state()
    out = draw(batch)
    after = torch.get_rng_state()
    torch.set_rng_state(state)
    return out, after


@pytest.mark.parametrize(
    "layer, shape",
    [
        (InformationDropout.linear(5, 4), (6, 5)),
        (InformationDropout.conv2d(2, 3, batch_norm=False), (6, 2, 6, 6)),
        (GaussianLatent.linear(5, 4), (6, 5)),
        (GaussianDropout(torch.nn.Linear(5, 4), p=0.3), (6, 5)),
    ],
)
@pytest.mark.parametrize("world_size", [2, 3, 4])
def test_each_rank_draws_the_noise_one_process_draws_for_its_rows(layer, shape, world_size):
    """Noise for the global batch, this rank's rows kept: the ranks' outputs are one process's output
    (to the rounding of a layer on fewer rows), and every rank ends with one process's random state
    (uneven blocks included: 6 rows on 4 ranks). In float64, so that the rounding of a convolution on fewer
    rows (a different kernel path in float32, a few ulp) sits far below a tolerance that any wrong draw exceeds."""
    layer = copy.deepcopy(layer).double()
    h = torch.randn(shape, dtype=torch.float64)
    with torch.no_grad():
        one, state_one = _once(h, layer)
        ranks, state_ranks = _as_ranks(world_size, h, layer)
    assert_close(ranks, one, rtol=1e-12, atol=1e-14)
    assert torch.equal(state_ranks, state_one)


@pytest.mark.parametrize("shape", [(6, 5), (6, 2, 3, 3)])
def test_the_sharded_draws_are_the_global_draw_exactly(shape):
    """``rsample`` of the guides' distributions (with a sample shape: the rows are dimension 1) in a shard
    is the global draw's block, bit for bit."""
    base, scale = torch.rand(shape), torch.rand(shape) + 0.1
    for family in (MultiplicativeLogNormal, Normal):
        one, state_one = _once(None, lambda _, family=family: family(base, scale).rsample((2,)))
        for world_size in (2, 3):
            state, parts = torch.get_rng_state(), []
            for rank in range(world_size):
                torch.set_rng_state(state)
                start, stop = row_block(6, rank, world_size)
                with shard(start, 6):
                    parts.append(family(base[start:stop], scale[start:stop]).rsample((2,)))
            assert torch.equal(torch.cat(parts, dim=1), one) and torch.equal(torch.get_rng_state(), state_one)
            torch.set_rng_state(state)


@pytest.mark.parametrize("world_size", [2, 3])
def test_binary_dropout_masks_agree_across_world_sizes(world_size):
    """Binary dropout draws the global mask inside a shard (not ``F.dropout``'s stream): every world size,
    one included, keeps the same mask for the same rows, and the same random state."""
    h = torch.randn(6, 2, 5, 5)
    layer = BinaryDropout(torch.nn.Identity(), p=0.4, activation=None)
    one, state_one = _as_ranks(1, h, layer)
    ranks, state_ranks = _as_ranks(world_size, h, layer)
    assert torch.equal(ranks, one) and torch.equal(state_ranks, state_one)
    kept = one != 0
    assert_close(one[kept], h[kept] / 0.6) and 0.4 < kept.float().mean() < 0.8  # a dropout mask, rescaled
    inputs, _ = _as_ranks(world_size, h, lambda x: dropout(x, 0.2, training=True))  # All-CNN's input dropout
    assert torch.equal(inputs, _as_ranks(1, h, lambda x: dropout(x, 0.2, training=True))[0])


def test_outside_a_shard_the_noise_is_the_plain_draw():
    layer = InformationDropout.linear(5, 4)
    h = torch.randn(3, 5)
    torch.manual_seed(3)
    z = layer(h)
    torch.manual_seed(3)
    eps = torch.randn(3, 4)
    with torch.no_grad():
        q = layer.distribution(h)
        assert_close(z, q.base * torch.exp(q.scale * eps))
    with pytest.raises(ValueError, match=r"rows 5\.\.8 of a global batch of 6"):
        with shard(5, 6):
            layer(h)


@pytest.mark.parametrize(
    "arch, options",
    [
        ("mlp", dict(hidden=(16, 12))),
        ("mlp", dict(hidden=(16, 12), dropout="vib")),
        ("vae", dict(hidden=(16,), z_dim=3, latent="information")),
    ],
)
def test_the_average_of_the_ranks_gradients_is_the_one_process_gradient(arch, options):
    """What DDP computes: each rank's per-example mean loss on its block (plate N, subsample B / K),
    gradients averaged over K ranks, equals one process's mean on the global batch. In float64, so that the
    summation order of fewer rows stays far below the tolerance."""
    torch.manual_seed(0)
    num_data, batch, world_size = 1000, 12, 3
    ib = build_network(arch, (1, 8, 8), 4, beta=0.01, num_data=num_data, **options).double()
    terms = ELBOModule(ib)
    x = torch.rand(batch, 1, 8, 8, dtype=torch.float64)
    y = None if arch == "vae" else torch.randint(0, 4, (batch,))

    def grads(rows_x, rows_y):
        ib.zero_grad(set_to_none=True)
        loss = terms(rows_x, rows_y).loss / num_data
        loss.backward()
        return loss.detach(), [p.grad.clone() for p in ib.parameters()]

    state = torch.get_rng_state()
    loss_one, grads_one = grads(x, y)
    per_rank = []
    for rank in range(world_size):
        torch.set_rng_state(state)
        start, stop = row_block(batch, rank, world_size)
        with shard(start, batch):
            per_rank.append(grads(x[start:stop], None if y is None else y[start:stop]))
    assert_close(sum(loss for loss, _ in per_rank) / world_size, loss_one)
    for i, g in enumerate(grads_one):
        assert_close(sum(r[1][i] for r in per_rank) / world_size, g, rtol=1e-10, atol=1e-12)


def _epoch(loader, epoch=0):
    loader.set_epoch(epoch)
    return list(loader)


@pytest.mark.parametrize("world_size", [2, 4])
def test_every_rank_draws_the_global_batches_and_keeps_its_block(world_size):
    """The same order on every rank, each its contiguous block; with augmentation, the global batch's
    draws (one process's batches, cut into blocks); extras follow their rows."""
    x = torch.randint(0, 256, (40, 3, 8, 8), dtype=torch.uint8)
    y, ids = torch.arange(40), torch.arange(40) * 10
    for transform in (None, Compose([RandomCrop(8, padding=2), RandomHorizontalFlip()])):

        def make(rank=None, transform=transform):
            loader = DeviceLoader(x, y, 8, True, True, 5, transform=transform, extras={"id": ids})
            return loader if rank is None else loader.shard(rank, world_size)

        one = _epoch(make(), 1)
        ranks = [_epoch(make(rank), 1) for rank in range(world_size)]
        for b, (xb, yb, extras) in enumerate(one):
            assert torch.equal(torch.cat([r[b][0] for r in ranks]), xb)
            assert torch.equal(torch.cat([r[b][1] for r in ranks]), yb)
            assert torch.equal(torch.cat([r[b][2]["id"] for r in ranks]), extras["id"])
        assert len(make(0).shard(0, world_size)) == len(make()) == 5  # global batches
    sprites = DSprites()
    subset = torch.randperm(len(sprites), generator=torch.Generator().manual_seed(0))[:24]
    one = _epoch(DSpritesLoader(sprites, 8, True, True, 3, indices=subset))
    ranks = [_epoch(DSpritesLoader(sprites, 8, True, True, 3, indices=subset).shard(r, 2)) for r in range(2)]
    for b, (images, factors) in enumerate(one):
        assert torch.equal(torch.cat([r[b][0] for r in ranks]), images)
        assert torch.equal(torch.cat([r[b][1] for r in ranks]), factors)


def test_a_world_size_that_does_not_divide_the_batch_is_refused():
    loader = DeviceLoader(torch.zeros(20, 1, 2, 2), torch.zeros(20), 10)
    with pytest.raises(ValueError, match="^batch_size=10 is not divisible by the world size 3: the batch size is"):
        loader.shard(0, 3)
    with pytest.raises(ValueError, match=r"^batch_size=100 is not divisible by the world size 3 \(torchrun's"):
        World(0, 3).check_batch(100)
    assert row_block(1, 1, 2) == (1, 1) and row_block(7, 0, 3) == (0, 3) and row_block(7, 2, 3) == (5, 7)


@dataclass(frozen=True)
class _PlayedRank(World):
    """A rank played in this process: its reductions are recorded and return its own part."""

    seen: list = field(default_factory=list)

    def sum(self, tensor):
        self.seen.append(tensor.clone())
        return tensor

    def broadcast_buffers(self, module):
        pass


@pytest.mark.parametrize(
    "preset, options",
    [
        ("mnist-mlp", dict(hidden=[16, 16], eval_samples=2)),
        ("mnist-vae", dict(hidden=[16], z_dim=3, latent="information")),
    ],
)
def test_the_ranks_test_totals_sum_to_one_process_totals(preset, options):
    """Each rank evaluates its block of every test batch with that batch's noise: the totals of the ranks
    add up to one process's, and every rank keeps one process's random state. The last test batch has
    one row, so one rank's block of it is empty (it draws the noise all the same)."""
    config = resolve(preset, overrides=dict(dataset="digits", epochs=1, batch_size=50, device="cpu", **options))
    trainer = Trainer(config, show_progress=False, log=lambda s: None)
    test = trainer.data.test
    trainer.data.test = DeviceLoader(test.x, test.y, len(test.x) - 1, False, False)  # the last batch: one row
    trainer.data.test.mean, trainer.data.test.std = test.mean, test.std

    def evaluate(world):
        trainer.world = world
        state = torch.get_rng_state()
        metrics = trainer.evaluate()
        after = torch.get_rng_state()
        torch.set_rng_state(state)
        return metrics, world.seen, after

    cpu = torch.device("cpu")
    metrics_one, totals_one, state_one = evaluate(_PlayedRank(device=cpu))
    played = [evaluate(_PlayedRank(rank, 2, rank, cpu)) for rank in range(2)]
    for i, total in enumerate(totals_one):
        assert_close(sum(p[1][i] for p in played), total, rtol=1e-6, atol=1e-4)
    assert all(torch.equal(p[2], state_one) for p in played)
    key = "test_elbo" if preset == "mnist-vae" else "test_error"
    assert metrics_one[key] == metrics_one[key]


# -- bad input: one line, before training ------------------------------------------------------------------------


def _torchrun_env(monkeypatch, **values):
    for name, value in values.items():
        monkeypatch.setenv(name, str(value))


_TINY = ["train", "mnist-mlp", "--dataset", "digits", "--hidden", "8", "--epochs", "1", "--device", "cpu"]


def test_a_world_size_that_does_not_divide_the_batch_is_one_line_before_anything(tmp_path, monkeypatch, capsys):
    _torchrun_env(monkeypatch, RANK=0, WORLD_SIZE=3, LOCAL_RANK=0, MASTER_ADDR="127.0.0.1", MASTER_PORT=1)
    assert main([*_TINY, "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert (
        err.startswith("infodropout train: batch_size=100 is not divisible by the world size 3")
        and err.count("\n") == 1
    )
    assert not (tmp_path / "run").exists() and not dist.is_initialized()


@pytest.mark.parametrize(
    "env, message",
    [
        (dict(RANK=0, WORLD_SIZE=2, LOCAL_RANK=0), "no rendezvous address (MASTER_ADDR and MASTER_PORT unset)"),
        (dict(RANK=0, WORLD_SIZE=2, LOCAL_RANK=0, MASTER_ADDR="h"), "no rendezvous address (MASTER_PORT unset)"),
        (dict(RANK=1, LOCAL_RANK=1), "RANK=1, LOCAL_RANK=1 in the environment without WORLD_SIZE"),
        (dict(RANK=2, WORLD_SIZE=2, LOCAL_RANK=0), "RANK=2 in the environment: expected a rank below WORLD_SIZE=2"),
        (dict(RANK="x", WORLD_SIZE=2, LOCAL_RANK=0), "RANK='x' in the environment: expected an integer"),
        (dict(RANK=0, WORLD_SIZE=2, LOCAL_RANK=0, MASTER_ADDR="h", MASTER_PORT=70000), "MASTER_PORT=70000"),
    ],
)
def test_an_environment_that_cannot_start_a_run_is_one_line(env, message, tmp_path, monkeypatch, capsys):
    _torchrun_env(monkeypatch, **env)
    assert main([*_TINY, "--batch-size", "50", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("infodropout train: ")
    assert message in err, err
    assert not (tmp_path / "run").exists() and not dist.is_initialized()


def test_world_size_one_is_one_process_and_a_bad_timeout_is_refused(tmp_path, monkeypatch, capsys):
    _torchrun_env(monkeypatch, RANK=0, WORLD_SIZE=1, LOCAL_RANK=0)  # torchrun --nproc-per-node=1: no rendezvous
    assert main([*_TINY, "--out", str(tmp_path / "run")]) == 0 and not dist.is_initialized()
    assert json.loads((tmp_path / "run" / "config.json").read_text())["world_size"] == 1
    with pytest.raises(SystemExit) as exit_:
        main([*_TINY, "--out", str(tmp_path / "other"), "--dist-timeout", "0"])
    assert exit_.value.code == 2 and "--dist-timeout: expected a number of seconds > 0" in capsys.readouterr().err


def test_a_failed_collective_is_named_as_lost_contact_and_other_errors_are_not():
    world = World(1, 2, timeout=5)
    gloo = RuntimeError("[../gloo/transport/tcp/pair.cc:545] Read error [::1]:4: Connection reset by peer. More")
    assert distributed.lost_contact(gloo, world) == (
        "rank 1 of 2: lost contact with the other ranks (Read error [::1]:4: Connection reset by peer. More): "
        "another rank died or stopped answering (a collective waits at most 5 s, --dist-timeout)"
    )
    assert distributed.lost_contact(RuntimeError("shape mismatch"), world) is None
    assert distributed.lost_contact(gloo, World()) is None


# -- the whole: real processes ------------------------------------------------------------------------------------

#: The MNIST MLP of the issue, small enough for a test; log_every 5 (the ranks agree on Ctrl-C every 5 steps).
_MNIST = dict(hidden=[64, 64, 64], num_train=2000, num_test=500, epochs=1, batch_size=100, device="cpu", log_every=5)


def _env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in TORCH_ENV}
    return {**env, "OMP_NUM_THREADS": "1", **extra}


def _torchrun(*args, timeout=240, **env) -> tuple[subprocess.CompletedProcess, float]:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", *map(str, args)]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=_env(**env))
    return done, time.perf_counter() - start


def _relative_differences(a: dict, b: dict) -> dict:
    """``||a - b|| / ||a||`` for every parameter tensor (float64)."""
    return {k: ((a[k].double() - b[k].double()).norm() / a[k].double().norm()).item() for k in a}


def _without_times(records):
    return [{k: v for k, v in r.items() if k not in ("seconds", "eval_seconds", "seconds_total")} for r in records]


def _approx_records(actual, expected, rel=1e-5):
    assert len(actual) == len(expected)
    for a, e in zip(_without_times(actual), _without_times(expected), strict=True):
        assert a.keys() == e.keys()
        for key in a:
            if isinstance(e[key], dict):
                assert a[key] == pytest.approx(e[key], rel=rel), key
            elif isinstance(e[key], float):
                assert a[key] == pytest.approx(e[key], rel=rel, abs=1e-9), key
            else:
                assert a[key] == e[key], key


def _history(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def runs(tmp_path_factory, data_dir):
    """One process's run of the MNIST MLP, and the same run by two gloo processes under torchrun
    (``-m infodropout.train``, the command users type)."""
    root = tmp_path_factory.mktemp("distributed")
    options = root / "options.json"
    options.write_text(json.dumps({"log_every": 5}))
    flags = ["--hidden", "64", "64", "64", "--num-train", "2000", "--num-test", "500", "--epochs", "1"]
    flags += ["--device", "cpu", "--config", str(options), "--data-dir", str(data_dir)]
    one = root / "one"
    assert main(["train", "mnist-mlp", *flags, "--out", str(one)]) == 0
    done, seconds = _torchrun("-m", "infodropout.train", "train", "mnist-mlp", *flags, "--out", root / "two")
    assert done.returncode == 0, done.stderr[-3000:]
    return dict(root=root, one=one, two=root / "two", done=done, seconds=seconds, data_dir=data_dir)


def test_two_processes_train_the_parameters_of_one_process(runs):
    """The target of issue 11: two gloo processes match one process to 1e-5 relative in every parameter
    after one epoch (same global batches, same noise); the random state is the same too."""
    one, two = (load_checkpoint(runs[k] / "checkpoint.pt") for k in ("one", "two"))
    differences = _relative_differences(one["model"], two["model"])
    assert max(differences.values()) <= 1e-5, differences
    assert torch.equal(one["rng"]["torch"], two["rng"]["torch"])
    assert (one["global_step"], two["global_step"]) == (20, 20) and two["world_size"] == 2


def test_two_processes_report_the_metrics_of_one_process_and_only_rank_0_prints(runs):
    _approx_records(_history(runs["two"]), _history(runs["one"]))
    metrics = [json.loads((runs[k] / "metrics.json").read_text()) for k in ("one", "two")]
    _approx_records([metrics[1]], [metrics[0]])
    assert json.loads((runs["two"] / "config.json").read_text())["world_size"] == 2
    assert json.loads((runs["one"] / "config.json").read_text())["world_size"] == 1
    out = runs["done"].stdout
    assert out.count("training mnist-mlp (information dropout) into") == 1 and "on 2 processes" in out
    assert out.count('"test_error"') == 1 and out.count("epoch   1") == 1
    names = [sorted(p.name.split(".")[0] for p in runs[k].iterdir()) for k in ("one", "two")]
    assert names[0] == names[1]


@pytest.fixture(scope="module")
def resumed(runs):
    """Two gloo processes under torchrun: a run interrupted in one process resumed by two; a run of two
    where only rank 1 gets Ctrl-C (after its 7th step), with each rank's report of the files it wrote;
    then a run where rank 1 is killed (SIGKILL) in its third step, while rank 0 waits for it in the
    gradient all-reduce (the collective timeout is 60 s)."""
    root = runs["root"]
    config = resolve("mnist-mlp", overrides=dict(_MNIST, data_dir=str(runs["data_dir"])))
    (root / "config.json").write_text(json.dumps(config.to_dict()))
    with pytest.raises(Interrupted, match="interrupted at epoch 1, step 7"):
        Trainer.start(config, root / "a", show_progress=False, log=lambda s: None).fit(stop_after_steps=7)
    reports = root / "reports"
    reports.mkdir()
    runs_abc = (root / "a", root / "b", root / "c")
    done, _ = _torchrun(WORKER, "resume-interrupt-kill", root / "config.json", *runs_abc, reports)
    ended = time.time()
    assert all((reports / f"rank{r}.json").is_file() for r in (0, 1)), done.stderr[-3000:]
    ranks = [json.loads((reports / f"rank{r}.json").read_text()) for r in (0, 1)]
    started_c = (root / "c" / "config.json").stat().st_mtime  # written before the first step of run C
    return dict(root=root, ranks=ranks, done=done, seconds_c=ended - started_c)


def _same_as_one_process(run: Path, runs):
    one, other = (load_checkpoint(p / "checkpoint.pt") for p in (runs["one"], run))
    assert max(_relative_differences(one["model"], other["model"]).values()) <= 1e-5
    _approx_records(_history(run), _history(runs["one"]))


def test_a_run_saved_by_one_process_resumes_on_two(resumed, runs):
    _same_as_one_process(resumed["root"] / "a", runs)


def test_ctrl_c_on_one_rank_stops_both_after_the_same_step_and_rank_0_saves(resumed):
    for report in resumed["ranks"]:
        assert report["stopped"] == "interrupted at epoch 1, step 10; checkpoint saved", report  # agreed at step 10
        assert report["global_step"] == 10
    assert load_checkpoint(resumed["root"] / "b" / "checkpoint.pt")["global_step"] == 10
    written = [sorted({Path(w.split()[-1]).name for w in r["written"]}) for r in resumed["ranks"]]
    assert written[1] == []  # rank 1 wrote nothing, rank 0 every file of both runs
    assert written[0] == ["a", "b", "checkpoint.pt", "config.json", "metrics.json", "metrics.jsonl"]


def test_a_run_saved_by_two_processes_resumes_on_one(resumed, runs):
    trainer = Trainer.from_run_dir(resumed["root"] / "b", show_progress=False, log=lambda s: None)
    assert (trainer.epoch, trainer.step_in_epoch) == (0, 10)
    trainer.fit()
    _same_as_one_process(resumed["root"] / "b", runs)


_DIGITS = ["train", "mnist-mlp", "--dataset", "digits", "--hidden", "16", "--epochs", "1", "--device", "cpu"]


def test_a_killed_rank_ends_the_run_at_once_and_torchrun_names_it(resumed):
    """Rank 1 killed: the run ends (torchrun's agent stops rank 0, blocked in the all-reduce, or rank 0
    loses the connection) well before the 60 s timeout, and torchrun's report names rank 1 and SIGKILL."""
    done = resumed["done"]
    assert done.returncode != 0 and resumed["seconds_c"] < 60, (resumed["seconds_c"], done.stderr[-2000:])
    failure = "rank      : 1 (local_rank: 1)\n  exitcode  : -9"
    assert failure in done.stderr and "(SIGKILL)" in done.stderr, done.stderr[-2000:]
    assert not (resumed["root"] / "c" / "checkpoint.pt").exists()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_rank_that_hangs_ends_the_others_within_the_timeout(tmp_path):
    """Without torchrun's agent (as on another machine), rank 1 stops (SIGSTOP) after its third step:
    rank 0, blocked in the all-reduce, gives up after --dist-timeout and says so in one line."""
    timeout, port = 3, _free_port()
    ranks = []
    for rank in (0, 1):
        env = _env(RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        command = [sys.executable, str(WORKER), "signal-rank-1", "STOP", "3", "--", *_DIGITS]
        command += ["--out", str(tmp_path / "run"), "--dist-timeout", str(timeout)]
        ranks.append(subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    try:
        deadline = time.monotonic() + 180
        while _state(ranks[1].pid) != "T":  # rank 1 has stopped itself
            assert ranks[1].poll() is None and time.monotonic() < deadline, ranks[1].communicate()
            time.sleep(0.05)
        stopped = time.monotonic()
        out, err = ranks[0].communicate(timeout=timeout + 60)
        waited = time.monotonic() - stopped
    finally:
        ranks[1].kill()
        ranks[1].communicate()
        ranks[0].kill()
    assert ranks[0].returncode == 2 and timeout - 0.5 < waited < timeout + 20, (waited, err)
    assert err.count("\n") == 1 and err.startswith(
        "infodropout train: rank 0 of 2: lost contact with the other ranks (Timed out waiting 3000ms"
    ), err
    assert "(a collective waits at most 3 s, --dist-timeout); the run stops, no checkpoint was saved yet" in err


def _state(pid: int) -> str:
    """The state letter of process ``pid`` (``T``: stopped)."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
