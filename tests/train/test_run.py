"""Training runs: exact resume, safety of the run files, bad input, the command line."""

import json
import os
import signal

import pytest
import torch

from infodropout.train.checkpoint import CheckpointError, load_checkpoint
from infodropout.train.cli import main
from infodropout.train.config import PRESETS, TrainConfig, read_config_file, resolve
from infodropout.train.engine import NonFiniteLoss
from infodropout.train.run import Interrupted, Trainer, _StopFlag


def _config(**changes):
    base = dict(
        dataset="digits", hidden=[16, 16], epochs=2, batch_size=50, schedule="step", milestones=[1], device="cpu"
    )
    base.update(changes)
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
    flag = _StopFlag()
    with flag.on_sigint():
        os.kill(os.getpid(), signal.SIGINT)
        assert flag.requested
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


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


_TINY = {
    "mnist-mlp": dict(hidden=[32, 32, 32], num_train=600, num_test=300),
    "cifar-allcnn": dict(width=0.05, num_train=300, num_test=200, recalibrate_batches=2),
    "cluttered-allcnn": dict(width=0.05, num_train=256, num_test=128, recalibrate_batches=2),
    "mnist-vae": dict(hidden=[64], z_dim=4, num_train=600, num_test=300),
    "dsprites-vae": dict(z_dim=4, num_train=256, num_test=256),
}


@pytest.mark.parametrize("preset", list(PRESETS))
def test_every_preset_trains_an_epoch_on_its_real_data(preset, data_dir, tmp_path):
    config = resolve(preset, overrides=dict(_TINY[preset], epochs=1, device="cpu", data_dir=str(data_dir)))
    final = Trainer.start(config, tmp_path / "run", show_progress=False, log=lambda s: None).fit()
    key = "test_elbo" if config.arch in ("vae", "conv-vae") else "test_error"
    assert key in final and final[key] == final[key], final  # present and not NaN
    assert set(final["kl_per_layer"]) == set(Trainer.from_run_dir(tmp_path / "run").ib.latent_sites)


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
    with pytest.raises(ValueError, match="b.json: not valid json"):
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
        (["train", "mnist-mlp", "--out", "x", "--prior", "gamma"], "invalid choice: 'gamma'"),
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
    assert result["ratio_vs_handwritten"] > 0 and result["speedup_vs_stock_svi"] > 0
    [target] = written["targets"]  # the CPU target, for the one model measured
    assert target["value"] == result["ratio_vs_handwritten"] and target["target"] == "<= 1.25"
    assert target["met"] == (result["ratio_vs_handwritten"] <= 1.25)


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
    assert main(["demo", "--epochs", "1", "--device", "cpu", "--out", str(tmp_path / "demo")]) == 0
    out = capsys.readouterr().out
    assert "digits" in out and "information" in out and "binary" in out
    assert (tmp_path / "demo" / "information" / "metrics.json").is_file()
