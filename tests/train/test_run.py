"""Training runs: exact resume, safety of the run files, bad input, the command line."""

import json
import os
import signal
import tempfile
from pathlib import Path

import pytest
import torch

from infodropout.train.checkpoint import CheckpointError, load_checkpoint
from infodropout.train.cli import main
from infodropout.train.config import PRESETS, TrainConfig, read_config_file, resolve
from infodropout.train.engine import NonFiniteLoss
from infodropout.train.ownership import LOCK_NAME
from infodropout.train.run import Interrupted, Trainer, _StopFlag


def _config(**changes):
    base = dict(
        dataset="digits", hidden=[16, 16], epochs=2, batch_size=50, schedule="step", milestones=[1], device="cpu"
    )
    base.update(changes)
    if base["epochs"] == 1 and "milestones" not in changes:
        del base["milestones"]  # a milestone at the last epoch is refused: it never takes effect
    return resolve("mnist-mlp", overrides=base)


def _same_state(a: Trainer, b: Trainer):
    sa, sb = a.ib.state_dict(), b.ib.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


def _without_times(history):
    return [{k: v for k, v in r.items() if k not in ("seconds", "eval_seconds")} for r in history]


def test_resume_continues_to_the_same_result_as_an_uninterrupted_run(tmp_path):
    config = _config(beta_warmup_epochs=0.5)
    whole = Trainer.start(config, tmp_path / "whole", show_progress=False, log=lambda s: None)
    whole.fit()
    parts = Trainer.start(config, tmp_path / "parts", show_progress=False, log=lambda s: None)
    with pytest.raises(Interrupted, match="epoch 2, step 11"):
        parts.fit(stop_after_steps=40)  # inside the second epoch
    resumed = Trainer.from_run_dir(tmp_path / "parts", show_progress=False, log=lambda s: None)
    assert (resumed.epoch, resumed.step_in_epoch) == (1, 11)
    resumed.fit()
    _same_state(whole, resumed)
    assert _without_times(whole.history) == _without_times(resumed.history)
    lines = (tmp_path / "parts" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2]


def test_run_files(tmp_path):
    trainer = Trainer.start(_config(epochs=1), tmp_path / "run", show_progress=False, log=lambda s: None)
    final = trainer.fit()
    run = tmp_path / "run"
    saved = json.loads((run / "config.json").read_text())
    assert saved["config"] == trainer.config.to_dict() and saved["seed"] == 0
    assert {"torch", "pyro-ppl", "python"} <= set(saved["versions"])
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics == json.loads(json.dumps(final))
    assert 0 <= metrics["test_error"] <= 100 and set(metrics["kl_per_layer"]) == {"z1", "z2"}
    record = json.loads((run / "metrics.jsonl").read_text().splitlines()[0])
    for key in ("train_loss", "train_nll", "train_kl", "test_error", "seconds"):
        assert key in record
    # the train loss is the per-example IB loss: nll + beta * KL
    assert record["train_loss"] == pytest.approx(
        record["train_nll"] + trainer.config.beta * record["train_kl_total"], rel=1e-4
    )
    assert load_checkpoint(run / "checkpoint.pt")["epoch"] == 1


def test_an_existing_run_directory_is_never_overwritten(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="exists and is not empty"):
        Trainer.start(_config(epochs=1), run)
    assert (run / "notes.txt").read_text() == "mine"


class _Poisoned:
    """The training batches of a real loader, with NaN inputs from epoch ``bad_epoch`` on."""

    def __init__(self, loader, bad_epoch):
        self.loader, self.bad_epoch = loader, bad_epoch

    def set_epoch(self, epoch):
        self.epoch = epoch
        self.loader.set_epoch(epoch)

    def __len__(self):
        return len(self.loader)

    def __iter__(self):
        for x, y in self.loader:
            yield (x * float("nan") if self.epoch >= self.bad_epoch else x), y


def test_a_nan_loss_stops_the_run_naming_epoch_and_step_and_keeps_the_last_good_checkpoint(tmp_path):
    trainer = Trainer.start(_config(epochs=3, log_every=5), tmp_path / "run", show_progress=False, log=lambda s: None)
    trainer.data.train = _Poisoned(trainer.data.train, bad_epoch=1)
    with pytest.raises(NonFiniteLoss, match="epoch 2, step 1 "):
        trainer.fit()
    state = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    assert state["epoch"] == 1 and all(
        torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point()
    )


def test_running_out_of_memory_names_the_batch_size_to_lower(tmp_path):
    trainer = Trainer.start(_config(epochs=1), tmp_path / "run", show_progress=False, log=lambda s: None)

    def exhausted(x, y):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    trainer._call_step = exhausted
    with pytest.raises(RuntimeError, match=r"^out of GPU memory at batch size 50: lower --batch-size \(try 25\)$"):
        trainer.fit()


def test_ctrl_c_asks_the_loop_to_stop_after_the_current_step():
    # Python's own handler first: a test run started in the background inherits SIGINT ignored
    inherited = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        flag = _StopFlag()
        with flag.on_sigint():
            os.kill(os.getpid(), signal.SIGINT)
            assert flag.requested
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGINT, inherited)


@pytest.mark.parametrize(
    "content, match",
    [
        (b"", "not a readable checkpoint"),
        (b"garbage" * 100, "not a readable checkpoint"),
        (None, "not an infodropout checkpoint"),
        ("truncate", "not a readable checkpoint"),
    ],
)
def test_damaged_or_foreign_checkpoints_are_named(tmp_path, content, match):
    trainer = Trainer.start(_config(epochs=1), tmp_path / "run", show_progress=False, log=lambda s: None)
    trainer.fit()
    path = tmp_path / "run" / "checkpoint.pt"
    if content is None:
        torch.save({"weights": torch.ones(2)}, path)
    elif content == "truncate":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    else:
        path.write_bytes(content)
    with pytest.raises(CheckpointError, match=match) as err:
        Trainer.from_run_dir(tmp_path / "run")
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_a_checkpoint_refuses_code(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"format": "infodropout-checkpoint", "version": 1, "obj": TrainConfig()}, path)
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_checkpoint(path)


def test_every_preset_resolves():
    for name in PRESETS:
        assert resolve(name).preset == name


_TINY = {  # enough steps of one epoch that the test loss falls (the SGD presets: smaller batches, All-CNN-96 lr x5)
    "mnist-mlp": dict(hidden=[32, 32, 32], num_train=600, num_test=300),
    "cifar-allcnn": dict(width=0.05, num_train=300, num_test=200, recalibrate_batches=2, batch_size=50),
    "cluttered-allcnn": dict(width=0.05, num_train=256, num_test=128, recalibrate_batches=2, batch_size=32, lr=0.05),
    "mnist-vae": dict(hidden=[64], z_dim=4, num_train=600, num_test=300),
    "dsprites-vae": dict(z_dim=4, num_train=256, num_test=256),
}


@pytest.mark.parametrize("preset", list(PRESETS))
def test_every_preset_trains_an_epoch_on_its_real_data(preset, data_dir, tmp_path):
    config = resolve(preset, overrides=dict(_TINY[preset], epochs=1, device="cpu", data_dir=str(data_dir)))
    trainer = Trainer.start(config, tmp_path / "run", show_progress=False, log=lambda s: None)
    before = trainer.evaluate()  # the untrained network
    final = trainer.fit()
    key = "test_elbo" if config.arch in ("vae", "conv-vae") else "test_error"
    assert key in final and final[key] == final[key], final  # present and not NaN
    assert set(final["kl_per_layer"]) == set(Trainer.from_run_dir(tmp_path / "run").ib.latent_sites)
    if config.arch in ("vae", "conv-vae"):  # the test loss fell: the ELBO rose, the task loss fell
        assert final["test_elbo"] > before["test_elbo"], (before, final)
    else:
        assert final["test_nll"] < before["test_nll"], (before, final)


@pytest.mark.parametrize(
    "overrides, match",
    [
        (dict(beta=-1.0), "beta=-1.0: expected a number >= 0"),
        (dict(epochs=0), "epochs=0"),
        (dict(width=0.0), "width=0.0"),
        (dict(hidden=[10, 0]), "hidden"),
        (dict(dataset="imagenet"), "dataset='imagenet': expected one of"),
        (dict(prior="gamma"), "prior='gamma': expected one of"),
        (dict(dropout="spike"), "dropout='spike'"),
        (dict(optimizer="lbfgs"), "optimizer"),
    ],
)
def test_bad_config_values_are_one_line_errors(overrides, match):
    with pytest.raises(ValueError, match=match) as err:
        resolve("mnist-mlp", overrides=overrides)
    assert "\n" not in str(err.value)


def test_unknown_preset_and_config_file_options(tmp_path):
    with pytest.raises(ValueError, match="preset='resnet'"):
        resolve("resnet")
    good = tmp_path / "c.toml"
    good.write_text("epochs = 3\nhidden = [8, 8]\n")
    assert resolve("mnist-mlp", read_config_file(good)).epochs == 3
    bad = tmp_path / "c.json"
    bad.write_text('{"epoch": 3}')
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['epoch'\]"):
        resolve("mnist-mlp", read_config_file(bad))
    broken = tmp_path / "b.json"
    broken.write_text("{")
    with pytest.raises(ValueError, match="b.json: not valid JSON"):
        read_config_file(broken)


def test_cli_train_eval_resume(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["train", "mnist-mlp", "--dataset", "digits", "--hidden", "16", "16", "--epochs", "1", "--device", "cpu"]
    assert main([*args, "--out", str(out)]) == 0
    assert (out / "checkpoint.pt").is_file() and (out / "metrics.json").is_file()
    assert main(["eval", str(out)]) == 0
    assert "test_error" in json.loads((out / "eval.json").read_text())
    assert main(["resume", str(out)]) == 0  # already complete: reports the final metrics
    assert main([*args, "--out", str(out)]) == 2
    assert "exists and is not empty" in capsys.readouterr().err


@pytest.mark.parametrize(
    "args, message",
    [
        (["train", "resnet", "--out", "x"], "invalid choice: 'resnet'"),
        (["train", "mnist-mlp", "--out", "x", "--epochs", "0"], "expected an integer >= 1"),
        (["train", "mnist-mlp", "--out", "x", "--width", "2", "--hidden", "3"], "not allowed with"),
    ],
)
def test_cli_rejects_bad_arguments_with_the_valid_choices(args, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(args)
    assert exit_.value.code == 2 and message in capsys.readouterr().err


def test_cli_reports_out_of_range_values_in_one_line(tmp_path, capsys):
    assert main(["train", "mnist-mlp", "--out", str(tmp_path / "r"), "--beta", "-1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "beta=-1.0" in err
    assert not (tmp_path / "r").exists()


def test_cli_names_missing_data_in_one_line_and_leaves_no_run_directory(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("INFODROPOUT_DATA", str(tmp_path / "nothing"))
    monkeypatch.setenv("INFODROPOUT_CACHE", str(tmp_path / "cache"))
    code = main(["train", "mnist-mlp", "--out", str(tmp_path / "run"), "--data-dir", str(tmp_path / "empty")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert "MNIST not found" in err and str(tmp_path / "empty") in err and "--data-dir" in err
    assert not (tmp_path / "run").exists()


def test_cli_bench_writes_ratios(tmp_path):
    assert main(["bench", "--device", "cpu", "--models", "mlp", "--repeats", "1", "--out", str(tmp_path)]) == 0
    written = json.loads((tmp_path / "bench.json").read_text())
    result = written["models"]["mlp"]
    ms = result["median_ms"]
    assert set(ms) == {"project", "handwritten", "stock_svi"} and all(v > 0 for v in ms.values())
    assert result["ratio_vs_handwritten"] == pytest.approx(ms["project"] / ms["handwritten"])
    assert result["speedup_vs_stock_svi"] == pytest.approx(ms["stock_svi"] / ms["project"])
    [target] = written["targets"]  # the CPU target, for the one model measured
    assert target["value"] == result["ratio_vs_handwritten"] and target["target"] == "<= 1.25"
    assert target["met"] == (result["ratio_vs_handwritten"] <= 1.25)


def test_the_benchmark_clock_measures_known_durations_in_rotating_order():
    """Variants that take 20 ms and 40 ms: medians of about 20 and 40, a ratio of about 2, both orders used."""
    import time as time_

    from infodropout.train.bench import _time_round_robin

    order = []

    def sleeper(name, seconds):
        def run():
            order.append(name)
            deadline = time_.perf_counter() + seconds
            while time_.perf_counter() < deadline:  # busy: a sleep may overshoot on a loaded machine
                pass

        return run

    variants = {"short": sleeper("short", 0.02), "long": sleeper("long", 0.04)}
    ms = _time_round_robin(variants, torch.device("cpu"), 1, 6)
    assert ms["short"] == pytest.approx(20, rel=0.3) and ms["long"] == pytest.approx(40, rel=0.3)
    assert ms["long"] / ms["short"] == pytest.approx(2, rel=0.3)
    timed = order[2:]  # after one warm-up call each
    assert timed[0::2] == ["short", "long"] * 3  # the first of each round alternates


def test_the_gpu_targets_are_read_from_a_bench_result():
    from infodropout.train.bench import check_targets

    result = {
        "models": {
            "mlp": {
                "ratio_vs_handwritten": 1.5,
                "graph_ratio_vs_handwritten_graph": 1.3,
                "graph_speedup_vs_stock_svi": 9,
            },
        },
        "throughput_allcnn32_bf16": {"images_per_second": {"project_information": 56_000.0}},
    }
    checks = {c["figure"]: c["met"] for c in check_targets(result, "cuda")}
    assert checks == {
        "mlp project / hand-written, eager": True,
        "mlp project / hand-written, graphed": False,
        "mlp speed-up over stock SVI, graphed": True,
        "allcnn32 b512 bf16 images/s (H100)": True,
    }


def test_cli_demo_falls_back_to_digits_without_mnist(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("INFODROPOUT_DATA", str(tmp_path / "empty"))
    monkeypatch.setenv("INFODROPOUT_CACHE", str(tmp_path / "cache"))
    demo = tmp_path / "demo"
    assert main(["demo", "--epochs", "1", "--quick", "--device", "cpu", "--out", str(demo)]) == 0
    out = capsys.readouterr().out
    assert "digits" in out and "information" in out and "binary" in out
    assert (demo / "classifiers" / "information" / "metrics.json").is_file()
    # the priors study's table, then where its report is
    priors = json.loads((demo / "priors" / "results.json").read_text())
    assert {c["labels"]["prior"] for c in priors["cells"]} == {"factorised", "correlated", "normal"}
    table = out.split("prior ")[-1]
    for cell in priors["cells"]:
        assert f"{cell['labels']['prior']:<22}{cell['metrics']['mig']['mean']:>11.3f}" in table
    # and what its differences mean: the study's verdicts, one line each
    shown = [v["line"] for v in priors["verdicts"] if v["metric"] in ("mig", "total_correlation", "log_likelihood")]
    assert len(shown) == 6 and all(f"  {line}\n" in table for line in shown)
    assert out.rstrip().splitlines()[-1] == f"report: {demo / 'priors' / 'report.md'}   runs: {demo}"
    assert (demo / "priors" / "report.md").is_file()


# -- hardening: every bad input a clear error, every run directory usable (issue 8) ------------------------------


def _quiet(**kwargs):
    return dict(show_progress=False, log=lambda s: None, **kwargs)


def test_a_run_with_zero_optimisation_steps_is_refused_before_a_directory_is_made(tmp_path, capsys):
    args = ["train", "mnist-mlp", "--out", str(tmp_path / "r"), "--hidden", "16", "--epochs", "1"]
    assert main([*args, "--dataset", "digits", "--num-train", "50", "--batch-size", "100", "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("infodropout train: num_train=50 and batch_size=100: an epoch would take 0 optimisation")
    assert err.count("\n") == 1 and not (tmp_path / "r").exists()
    # a data set smaller than one batch, with no --num-train: found once the data are loaded
    with pytest.raises(ValueError, match="^num_train=1497 and batch_size=2000: an epoch would take 0"):
        Trainer.start(_config(batch_size=2000), tmp_path / "r2", **_quiet())
    assert not (tmp_path / "r2").exists()


def test_a_relu_network_with_a_log_normal_prior_is_refused_on_the_command_line(tmp_path, capsys):
    args = ["train", "mnist-mlp", "--out", str(tmp_path / "r"), "--dataset", "digits", "--prior", "factorised"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("infodropout train: prior='factorised' with activation='relu': expected one of log-uniform")
    assert err.count("\n") == 1 and not (tmp_path / "r").exists()


def test_a_config_with_tuples_from_python_resumes_and_evaluates_through_its_checkpoint(tmp_path):
    config = TrainConfig(
        dataset="digits", hidden=(16,), schedule="step", milestones=(1,), epochs=2, batch_size=50, device="cpu"
    )
    trainer = Trainer.start(config, tmp_path / "run", **_quiet())
    with pytest.raises(Interrupted):
        trainer.fit(stop_after_steps=3)
    resumed = Trainer.from_run_dir(tmp_path / "run", **_quiet())
    assert (resumed.epoch, resumed.step_in_epoch) == (0, 3) and resumed.config.hidden == [16]
    resumed.fit()
    assert "test_error" in Trainer.from_run_dir(tmp_path / "run", **_quiet()).evaluate()
    # a checkpoint that an older version wrote with the tuples in it is read as the same config
    path = tmp_path / "run" / "checkpoint.pt"
    state = load_checkpoint(path)
    state["config"] = {**state["config"], "hidden": (16,), "milestones": (1,)}
    torch.save(state, path)
    assert Trainer.from_run_dir(tmp_path / "run", **_quiet()).epoch == 2


def test_a_nan_before_the_first_checkpoint_says_so_and_leaves_a_usable_directory(tmp_path, capsys):
    run = tmp_path / "run"
    trainer = Trainer.start(_config(epochs=1, log_every=5), run, **_quiet())
    trainer.data.train = _Poisoned(trainer.data.train, bad_epoch=0)
    with pytest.raises(NonFiniteLoss) as err:
        trainer.fit()
    assert str(err.value).startswith("the loss became NaN or infinite at epoch 1, step 1 (global step 1)")
    assert "keeping the last good checkpoint" not in str(err.value)
    assert f"no checkpoint was saved yet: `infodropout resume {run}` restarts the run from the beginning" in str(
        err.value
    )
    assert sorted(p.name for p in run.iterdir() if p.name != LOCK_NAME) == ["config.json"]
    # resumable from its start: the same result as a run that never failed
    resumed = Trainer.from_run_dir(run, **_quiet())
    assert (resumed.epoch, resumed.global_step) == (0, 0)
    resumed.fit()
    whole = Trainer.start(_config(epochs=1, log_every=5), tmp_path / "whole", **_quiet())
    whole.fit()
    _same_state(whole, resumed)
    # or reused by train --out
    other = tmp_path / "other"
    failed = Trainer.start(_config(epochs=1), other, **_quiet())
    failed.data.train = _Poisoned(failed.data.train, bad_epoch=0)
    with pytest.raises(NonFiniteLoss):
        failed.fit()
    args = ["train", "mnist-mlp", "--dataset", "digits", "--hidden", "16", "--epochs", "1", "--device", "cpu"]
    assert main([*args, "--out", str(other)]) == 0
    assert f"reusing {other}: it held a run that never saved a checkpoint" in capsys.readouterr().out
    assert json.loads((other / "config.json").read_text())["config"]["hidden"] == [16]


def test_a_nan_after_a_checkpoint_names_the_checkpoint_kept(tmp_path):
    trainer = Trainer.start(_config(epochs=3, log_every=5), tmp_path / "run", **_quiet())
    trainer.data.train = _Poisoned(trainer.data.train, bad_epoch=1)
    with pytest.raises(NonFiniteLoss, match=r"the run stops, keeping the last good checkpoint \(the end of epoch 1\)$"):
        trainer.fit()
    trainer = Trainer(_config(epochs=1), **_quiet())  # no run directory: nothing is kept, and it says so
    trainer.data.train = _Poisoned(trainer.data.train, bad_epoch=0)
    with pytest.raises(NonFiniteLoss, match=r"the run stops, nothing is kept \(no run directory\)$"):
        trainer.fit()


def test_a_directory_with_results_or_other_files_is_still_never_reused(tmp_path):
    run = tmp_path / "run"
    Trainer.start(_config(epochs=1), run, **_quiet()).fit()
    with pytest.raises(FileExistsError, match="exists and is not empty"):
        Trainer.start(_config(epochs=1), run)
    (run / "checkpoint.pt").unlink()  # metrics remain: a run with results, not one that never saved
    with pytest.raises(FileExistsError, match="exists and is not empty"):
        Trainer.start(_config(epochs=1), run)
    with pytest.raises(CheckpointError, match="no checkpoint there"):
        Trainer.from_run_dir(run)


def test_a_run_killed_while_writing_its_first_config_leaves_a_directory_a_new_run_may_take(tmp_path):
    """SIGKILL between the temporary file of an atomic write and its rename (a study worker killed as its
    run starts) leaves ``.config.json.XXXX.tmp`` alone in the directory: that is nothing of a run."""
    run = tmp_path / "run"
    run.mkdir()
    fd, leftover = tempfile.mkstemp(dir=run, prefix=".config.json.", suffix=".tmp")
    os.write(fd, b'{"config": {"hidd')  # cut off mid-write
    os.close(fd)
    Trainer.start(_config(epochs=1), run, **_quiet()).fit()
    assert (run / "checkpoint.pt").is_file() and json.loads((run / "config.json").read_text())["config"]
    # a file of the user's, hidden or not, still keeps a directory from being taken
    for name in (".notes", "notes.tmp", ".tmp"):
        other = tmp_path / f"other{name}"
        other.mkdir()
        (other / name).write_text("mine")
        with pytest.raises(FileExistsError, match="exists and is not empty"):
            Trainer.start(_config(epochs=1), other)
        assert (other / name).read_text() == "mine"


def test_an_explicit_data_dir_that_does_not_exist_is_an_error_even_with_the_environment_set(
    tmp_path, data_dir, monkeypatch, capsys
):
    monkeypatch.setenv("INFODROPOUT_DATA", str(data_dir))  # MNIST is there
    missing = tmp_path / "typo"
    args = ["train", "mnist-mlp", "--out", str(tmp_path / "r"), "--hidden", "16", "--epochs", "1"]
    assert main([*args, "--num-train", "200", "--device", "cpu", "--data-dir", str(missing)]) == 2
    err = capsys.readouterr().err
    assert (
        err == f"infodropout train: MNIST not found: the data directory {missing} given by --data-dir does not exist\n"
    )
    assert not (tmp_path / "r").exists()


def test_the_data_directory_actually_read_is_recorded_so_another_shell_can_resume(tmp_path, data_dir, monkeypatch):
    monkeypatch.setenv("INFODROPOUT_DATA", str(data_dir))
    run = tmp_path / "run"
    config = resolve("mnist-mlp", overrides=dict(hidden=[16], epochs=2, num_train=200, num_test=100, device="cpu"))
    trainer = Trainer.start(config, run, **_quiet())
    with pytest.raises(Interrupted):
        trainer.fit(stop_after_steps=1)
    saved = json.loads((run / "config.json").read_text())
    assert saved["config"]["data_dir"] is None and saved["data_dir"] == str(data_dir.absolute())
    monkeypatch.delenv("INFODROPOUT_DATA")  # another shell
    monkeypatch.setenv("INFODROPOUT_CACHE", str(tmp_path / "cache"))
    assert main(["resume", str(run)]) == 0
    assert main(["eval", str(run)]) == 0
    digits = Trainer.start(_config(epochs=1), tmp_path / "digits", **_quiet())  # bundled: no directory read
    assert json.loads((tmp_path / "digits" / "config.json").read_text())["data_dir"] is None
    assert digits.data.source is None


@pytest.mark.parametrize("dataset, flips", [("digits", False), ("mnist", False), ("cifar10", True)])
def test_augment_crops_every_data_set_and_flips_only_the_mirror_invariant_one(dataset, flips, data_dir):
    from infodropout.train.data import RandomCrop, RandomHorizontalFlip
    from infodropout.train.run import load_run_data

    where = {} if dataset == "digits" else dict(data_dir=str(data_dir))  # digits: bundled, no directory read
    config = _config(dataset=dataset, augment=True, num_train=100, num_test=100, **where)
    transforms = load_run_data(config, torch.device("cpu")).train.transform.transforms
    assert isinstance(transforms[0], RandomCrop) and transforms[0].padding >= 1
    assert any(isinstance(t, RandomHorizontalFlip) for t in transforms) == flips


def test_resume_and_bench_refuse_a_file_and_bench_fails_before_timing(tmp_path, capsys, monkeypatch):
    import infodropout.train.bench as bench

    afile = tmp_path / "afile"
    afile.write_text("x")
    assert main(["resume", str(afile)]) == 2
    assert capsys.readouterr().err == f"infodropout resume: {afile}: not a run directory (it is a file)\n"
    monkeypatch.setattr(bench, "bench_model", lambda *a, **k: pytest.fail("the benchmark ran"))
    assert main(["bench", "--device", "cpu", "--out", str(afile)]) == 2
    assert capsys.readouterr().err == f"infodropout bench: --out {afile}: is a file, not a directory for bench.json\n"
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "bench.json").write_text("{}")
    assert main(["bench", "--device", "cpu", "--out", str(tmp_path / "b")]) == 2
    assert (
        "bench.json exists (an earlier benchmark): choose another --out or pass --overwrite" in capsys.readouterr().err
    )
    assert (tmp_path / "b" / "bench.json").read_text() == "{}"


def test_resume_of_a_finished_run_and_a_second_eval_overwrite_nothing(tmp_path, capsys):
    run = tmp_path / "run"
    args = ["train", "mnist-mlp", "--dataset", "digits", "--hidden", "16", "--epochs", "1", "--device", "cpu"]
    assert main([*args, "--out", str(run)]) == 0
    metrics = (run / "metrics.json").read_bytes()
    mtime = (run / "metrics.json").stat().st_mtime_ns
    capsys.readouterr()
    assert main(["resume", str(run)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"{run}: the run is complete (1 of 1 epochs); its final metrics")
    assert "at epoch 2 of 1" not in out and json.loads(out.split(":\n", 1)[1]) == json.loads(metrics)
    assert (run / "metrics.json").read_bytes() == metrics and (run / "metrics.json").stat().st_mtime_ns == mtime
    assert main(["eval", str(run)]) == 0
    first = (run / "eval.json").read_text()
    assert main(["eval", str(run)]) == 2
    assert (
        f"{run / 'eval.json'} exists (an earlier evaluation): pass --overwrite to replace it" in capsys.readouterr().err
    )
    assert (run / "eval.json").read_text() == first
    assert main(["eval", str(run), "--overwrite"]) == 0


@pytest.mark.parametrize("convention", ["exact", "authors"])
def test_every_report_gives_the_information_under_both_kl_conventions(convention, tmp_path):
    run = tmp_path / "run"
    args = ["train", "mnist-mlp", "--dataset", "digits", "--hidden", "16", "16", "--epochs", "1", "--device", "cpu"]
    assert main([*args, "--out", str(run), "--kl-convention", convention]) == 0
    assert main(["eval", str(run)]) == 0
    metrics, evaluation = (json.loads((run / f).read_text()) for f in ("metrics.json", "eval.json"))
    record = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
    for report in (metrics, evaluation, record):
        assert report["kl_convention"] == convention
        assert report["test_kl"] == report[f"test_kl_{convention}"]
        for site in ("z1", "z2"):  # the authors charge the units that are off as well
            assert report["test_kl_authors"][site] > report["test_kl_exact"][site] > 0
    assert metrics["kl_per_layer"] == metrics[f"kl_per_layer_{convention}"] == metrics["test_kl"]
    assert metrics["kl_per_layer_authors"] == metrics["test_kl_authors"]
    trainer = Trainer.from_run_dir(run, **_quiet())
    assert trainer.ib.kl_convention == convention
    # the train loss is the objective under the run's convention
    assert record["train_loss"] == pytest.approx(record["train_nll"] + trainer.config.beta * record["train_kl_total"])


def test_binary_dropout_reports_state_the_convention_and_have_no_log_uniform_layers(tmp_path):
    final = Trainer.start(_config(epochs=1, dropout="binary"), tmp_path / "run", **_quiet()).fit()
    assert final["kl_convention"] == "exact" and final["test_kl"] == {}
    assert "test_kl_authors" not in final and "kl_per_layer_authors" not in final


#: The README's own prior (log z ~ Laplace, no KL registered) as a plug-in file, registered as "log-laplace".
_PLUGIN = (Path(__file__).parent / "studies" / "golden" / "log_laplace.py").read_text()


def test_a_prior_plugin_trains_from_the_command_line_and_is_recorded_for_resume(tmp_path):
    from infodropout.models.priors import PRIORS, unregister_prior

    plugin = tmp_path / "my_priors.py"
    plugin.write_text(_PLUGIN)
    run = tmp_path / "run"
    args = ["train", "mnist-mlp", "--dataset", "digits", "--hidden", "16", "--epochs", "1", "--device", "cpu"]
    try:
        code = main(
            [
                *args,
                "--out",
                str(run),
                "--activation",
                "softplus",
                "--prior",
                "log-laplace",
                "--plugin",
                str(plugin),
            ]
        )
        assert code == 0 and "log-laplace" in PRIORS
        saved = json.loads((run / "config.json").read_text())["config"]
        assert saved["plugins"] == [str(plugin.resolve())] and saved["prior"] == "log-laplace"
        trainer = Trainer.from_run_dir(run, **_quiet())
        assert type(trainer.ib.model.priors[0]).__name__ == "LogLaplacePrior"
        metrics = json.loads((run / "metrics.json").read_text())
        assert metrics["kl_per_layer"]["z1"] > 0  # Monte Carlo: no KL is registered for it
    finally:
        unregister_prior("log-laplace")


def test_a_run_directory_holding_only_a_studys_report_of_a_failed_try_is_taken_by_a_new_run(tmp_path):
    """A study writes failure.txt (and train.log) into the directory of a run that failed before writing anything
    of its own (e.g. its data were missing): --resume must be able to try that run again."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "failure.txt").write_text("Traceback ...\nDataNotFoundError: MNIST not found\n")
    (run / "train.log").write_text("")
    trainer = Trainer.start(_config(epochs=1), run, **_quiet())
    assert (run / "config.json").is_file() and trainer.run_dir == run
