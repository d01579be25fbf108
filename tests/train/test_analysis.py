"""``uncertainty``, ``prune`` and ``info-plane`` end to end in their quick modes (tiny networks on scikit-learn's
digits; ``uncertainty`` also on a tiny CIFAR-10 run against its default OOD sets), and their one-line errors."""

import json

import pytest
import torch

from infodropout.train import data as datalib
from infodropout.train.analysis.runs import load_finished
from infodropout.train.analysis.uncertainty import ood_loader
from infodropout.train.cli import main
from infodropout.train.evaluation import read_record
from infodropout.train.evaluation.pruning import PrunedMLP
from infodropout.train.studies import EXPERIMENTS, StudyOptions
from infodropout.train.studies.info_plane import pareto_front

PNG = b"\x89PNG\r\n\x1a\n"
TINY = ["--dataset", "digits", "--hidden", "12", "12", "--epochs", "1", "--device", "cpu", "--threads", "1"]


def _png(path):
    assert path.is_file() and path.read_bytes()[:8] == PNG, path


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """An information-dropout and a binary-dropout classifier on digits, and the quick info-plane study."""
    root = tmp_path_factory.mktemp("runs")
    assert main(["train", "mnist-mlp", *TINY, "--out", str(root / "info")]) == 0
    assert main(["train", "mnist-mlp", *TINY, "--dropout", "binary", "--out", str(root / "binary")]) == 0
    assert main(["info-plane", "--quick", "--device", "cpu", "--threads", "1", "--out", str(root / "plane")]) == 0
    return root


def test_uncertainty_quick_compares_runs_in_one_table_and_writes_the_record_and_figures(runs, tmp_path, capsys):
    out = tmp_path / "unc"
    assert main(["uncertainty", str(runs / "info"), str(runs / "binary"), "--quick", "--out", str(out)]) == 0
    results = json.loads((out / "uncertainty.json").read_text())
    assert results["settings"]["samples"] == [1, 5] and results["settings"]["ood"] == ["noised"]
    info, binary = results["runs"]["info"], results["runs"]["binary"]
    assert {"noise-off", "temperature", "mc-1", "mc-5"} <= set(info["calibration"])
    scores = {"entropy-noise-off", "entropy-mc-5", "bald-mc-5", "information", "information-typicality"}
    assert set(info["ood"]["noised"]) == scores
    assert set(binary["ood"]["noised"]) == scores - {"information", "information-typicality"}  # no information cost
    assert info["test_examples"] == 200 and info["held_out_examples"] == 100
    assert set(results["targets"]["information_mc_ece_at_most_binary"]) == {"1", "5"}
    record = read_record(out)
    test = record["info/test"].to_dataset()
    assert test["mc_probs"].shape == (2, 200, 10) and int(test["held_out"].sum()) == 100
    assert list(test["site"].values) == ["z1", "z2"] and "score_information" in test
    assert "binary/ood/noised" in record.groups or "/binary/ood/noised" in record.groups
    table = (out / "uncertainty.md").read_text()
    assert "## Calibration" in table and "| info | information | mc-5 |" in table and "## Targets" in table
    for name in ("reliability-info", "reliability-binary", "roc-noised"):
        _png(out / "figures" / f"{name}.png")


def test_prune_quick_saves_networks_that_equal_the_masked_original(runs, tmp_path):
    out = tmp_path / "prune"
    assert main(["prune", str(runs / "info"), "--quick", "--keep", "6,4", "12,12", "--out", str(out)]) == 0
    results = json.loads((out / "prune.json").read_text())
    assert [p["units"] for p in results["curve"]] == [[6, 4], [12, 12]]
    full = results["curve"][-1]
    assert full["errors"]["information"] == pytest.approx(results["unpruned"]["test_error"])  # nothing removed
    assert results["rankings"] == ["information", "fitted", "magnitude", "random"]
    for point in results["curve"]:
        assert len(point["random_errors"]) == 3 and set(point["networks"]) == {"information", "fitted"}
        for network in point["networks"].values():
            assert network["max_logit_difference"] < 1e-4 and network["seconds"] > 0
            saved = torch.load(out / network["network"], weights_only=True)
            assert PrunedMLP.from_file(saved).widths == [64, *point["units"]]
    units = read_record(out)["units"].to_dataset()
    assert units["information_z1"].shape == (12,) and "magnitude_z2" in units and "fitted_z2" in units
    assert set(results["targets"]["by_ranking"]) == {"information", "fitted"}
    assert set(results["noise"]) == {"z1", "z2"}
    assert all(0 <= v <= 1 for o in results["noise"].values() for v in o.values()), results["noise"]
    assert "## Where the noise sits (training images)\n" in (out / "prune.md").read_text()
    _png(out / "figures" / "pruning_curve.png")
    _png(out / "figures" / "unit_information.png")


def test_info_plane_quick_keeps_every_epoch_of_every_run_and_draws_both_planes(runs):
    out = runs / "plane"
    results = json.loads((out / "results.json").read_text())
    models = {(r["labels"]["model"], r["labels"]["beta"]) for r in results["runs"]}
    assert models == {("mlp", 1e-4), ("mlp", 1e-2), ("mlp", 0.1), ("vae", 0.5), ("vae", 1.0), ("vae", 4.0)}
    for run in results["runs"]:
        epochs = run["measures"]["epochs"]
        history = [json.loads(line) for line in (out / "runs" / run["name"] / "metrics.jsonl").read_text().splitlines()]
        assert [e["epoch"] for e in epochs] == [1, 2]
        assert [e["test_nll"] for e in epochs] == [h["test_nll"] for h in history]
        if run["labels"]["model"] == "mlp":
            assert set(epochs[-1]["test_kl_authors"]) == {"z1", "z2"}
    # `infodropout info-plane` is `reproduce info-plane`: the study its directory holds is the experiment's
    study = EXPERIMENTS["info-plane"].build(StudyOptions(quick=True, device="cpu"))
    assert json.loads((out / "study.json").read_text()) == json.loads(json.dumps(study.manifest()))
    for name in ("mlp_across_beta", "mlp_across_training", "vae_across_beta", "vae_across_training"):
        _png(out / "figures" / f"{name}.png")
    assert "Pareto front" in (out / "results.md").read_text()


def test_pareto_front_keeps_the_points_no_other_beats_on_both_axes():
    points = [(1.0, 5.0), (2.0, 3.0), (3.0, 3.0), (4.0, 1.0), (2.0, 4.0), (4.0, 1.0)]
    assert pareto_front(points) == [0, 1, 3, 5]  # (3, 3) and (2, 4) are beaten by (2, 3); equal points both stay


@pytest.mark.parametrize(
    "args, message",
    [
        (["uncertainty", "{root}/nowhere"], "no such run directory"),
        (["uncertainty", "{root}/plane/runs/vae-b1-s0"], "not a classifier"),
        (["prune", "{root}/info", "--keep", "13,2"], "--keep 13,2: layer 'z1': keep 13 units"),
        (["prune", "{root}/binary"], "carry no information cost"),
        (["prune", "{root}/plane/runs/vae-b1-s0"], "not a classifier"),
        (["uncertainty", "{root}/info", "--samples", "0"], "draws of the noise"),
    ],
)
def test_bad_input_is_one_line(runs, tmp_path, capsys, args, message):
    argv = [a.format(root=runs) for a in args] + ["--out", str(tmp_path / "out")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err
    assert not (tmp_path / "out").exists()  # nothing left behind


def test_an_ood_set_of_other_images_is_refused(runs, tmp_path, capsys, data_dir):
    argv = ["uncertainty", str(runs / "info"), "--ood", "mnist", "--data-dir", str(data_dir)]
    assert main([*argv, "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "its images are (1, 28, 28), the run's (digits) are (1, 8, 8)" in err


def test_an_output_directory_that_holds_something_is_refused(runs, tmp_path, capsys):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "mine.txt").write_text("keep me")
    assert main(["prune", str(runs / "info"), "--quick", "--out", str(tmp_path / "out")]) == 2
    assert "exists and is not empty" in capsys.readouterr().err
    assert (tmp_path / "out" / "mine.txt").read_text() == "keep me"


def test_a_cifar_run_is_scored_against_its_noised_and_occluded_test_images(tmp_path, data_dir):
    """CIFAR-10 end to end: the network measured as the run tested it (batch-norm statistics re-estimated: its
    noise-off error equals the run's reported test error), a random ``--num-examples`` sample (CIFAR-10's test
    set is stored by class: its first 200 images are all airplanes), and the default OOD sets, the noised test
    images and Occluded CIFAR's (the same scenes with a digit over them), each standardised with the run's own
    statistics, as its test images are (OOD images standardised with their own statistics would hide part of
    the shift the scores are there to see)."""
    run = tmp_path / "cifar"
    tiny = ["--width", "0.1", "--epochs", "1", "--num-train", "200", "--device", "cpu", "--threads", "1"]
    assert main(["train", "cifar-allcnn", *tiny, "--data-dir", str(data_dir), "--out", str(run)]) == 0
    reported = json.loads((run / "metrics.json").read_text())["test_error"]
    everything = tmp_path / "all"
    argv = ["uncertainty", str(run), "--samples", "1", "--ood", "noised", "--data-dir", str(data_dir)]
    assert main([*argv, "--out", str(everything)]) == 0
    test = read_record(everything)["cifar/test"].to_dataset()
    assert test.sizes["example"] == 10_000
    noise_off_error = 100 * float((test["log_probs"].values.argmax(1) != test["label"].values).mean())
    assert noise_off_error == pytest.approx(reported, abs=0.011)  # 1 image in 10,000 (float order of the batches)

    out = tmp_path / "unc"
    assert main(["uncertainty", str(run), "--quick", "--data-dir", str(data_dir), "--out", str(out)]) == 0
    results = json.loads((out / "uncertainty.json").read_text())
    assert results["dataset"] == "cifar10" and results["settings"]["ood"] == ["noised", "occluded-cifar"]
    measured = results["runs"]["cifar"]
    assert measured["ood_examples"] == {"noised": 200, "occluded-cifar": 200}
    labels = read_record(out)["cifar/test"].to_dataset()["label"].values
    assert len(labels) == 200 and len(set(labels.tolist())) == 10  # a random sample: every class
    scores = {"entropy-noise-off", "entropy-mc-5", "bald-mc-5", "information", "information-typicality"}
    for name in ("noised", "occluded-cifar"):
        assert set(measured["ood"][name]) == scores
        assert all(0.0 <= s["auroc"] <= 1.0 for s in measured["ood"][name].values())
        _png(out / "figures" / f"roc-{name}.png")

    trainer = load_finished(run, str(data_dir))
    occluded = datalib.get_dataset("occluded-cifar", str(data_dir), "cpu", trainer.config.seed, n_train=1, n_test=50)
    loader = ood_loader("occluded-cifar", trainer, limit=50, noise_std=0.5, seed=0, data_dir=str(data_dir))
    x, y = (torch.cat(parts) for parts in zip(*[(b[0], b[1]) for b in loader], strict=True))
    mean, std = (torch.as_tensor(v).reshape(1, 3, 1, 1).cpu() for v in (trainer.data.test.mean, trainer.data.test.std))
    assert torch.equal(y.cpu(), occluded.y_test.cpu())
    torch.testing.assert_close(x.cpu() * std + mean, occluded.x_test.float() / 255.0, atol=1e-5, rtol=0)
    assert not torch.allclose(mean, occluded.x_test.float().mean((0, 2, 3)).view(1, 3, 1, 1) / 255.0, atol=1e-3)
