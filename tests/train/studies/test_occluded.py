"""The ``occluded`` experiment: the nuisance probe on known representations, the grids, a quick study."""

import dataclasses
import json

import pytest
import torch

from infodropout.models.zoo import build_network
from infodropout.train.evaluation import evaluating, linear_probe
from infodropout.train.evaluation.probe import L2_GRID
from infodropout.train.studies import EXPERIMENTS, StudyOptions, run_experiment, select
from infodropout.train.studies import occluded as exp
from tests.common import assert_close

PNG = b"\x89PNG\r\n\x1a\n"


def _labels(n, seed, classes=10):
    return torch.randint(0, classes, (n,), generator=torch.Generator().manual_seed(seed))


def test_the_probe_reads_a_nuisance_that_the_representation_encodes_linearly():
    g = torch.Generator().manual_seed(0)
    codes = torch.randn(10, 40, generator=g)  # one direction per digit

    def represent(y):
        return codes[y] + 0.3 * torch.randn(len(y), 40, generator=g)  # (N, 40)

    y_train, y_test = _labels(600, 1), _labels(400, 2)
    probe = linear_probe(represent(y_train), y_train, represent(y_test), y_test, 10)
    assert probe["accuracy"] >= 0.99 and probe["train_accuracy"] >= 0.99
    assert probe["l2"] in L2_GRID


def test_the_probe_is_at_chance_on_a_representation_that_ignores_the_nuisance():
    g = torch.Generator().manual_seed(0)
    y_train, y_test = _labels(1000, 3), _labels(2000, 4)
    x_train, x_test = torch.randn(1000, 30, generator=g), torch.randn(2000, 30, generator=g)
    probe = linear_probe(x_train, y_train, x_test, y_test, 10)
    majority = int(torch.bincount(y_train, minlength=10).argmax())
    assert probe["chance"] == pytest.approx(float((y_test == majority).double().mean()))
    assert abs(probe["accuracy"] - 0.1) < 0.03  # 10 balanced classes; 3 standard errors of 2000 answers ~ 0.02


def test_chance_is_the_test_frequency_of_the_most_frequent_training_label():
    y_train = torch.tensor([3, 3, 3, 1, 2, 0])
    y_test = torch.tensor([3, 0, 0, 1, 3, 2, 2, 2])  # 3 is 2 of 8
    probe = linear_probe(torch.zeros(6, 4), y_train, torch.zeros(8, 4), y_test, 4)
    assert probe["chance"] == 0.25
    assert probe["accuracy"] == 0.25  # a constant representation: the probe can only answer the majority


def test_the_probe_sees_each_coordinate_standardised():
    g = torch.Generator().manual_seed(5)
    y_train, y_test = _labels(300, 6, 3), _labels(200, 7, 3)
    codes = torch.randn(3, 8, generator=g)
    x_train = codes[y_train] + torch.randn(300, 8, generator=g)
    x_test = codes[y_test] + torch.randn(200, 8, generator=g)
    scale, shift = torch.logspace(-3, 3, 8, dtype=torch.float64), torch.linspace(-50, 50, 8, dtype=torch.float64)
    plain = linear_probe(x_train, y_train, x_test, y_test, 3)
    scaled = linear_probe(x_train * scale + shift, y_train, x_test * scale + shift, y_test, 3)
    assert scaled == pytest.approx(plain, abs=1e-12)  # the same standardised problem, the same answers


def test_the_probe_names_mismatched_inputs():
    with pytest.raises(ValueError, match="probe: 5 training representations for 4 labels"):
        linear_probe(torch.zeros(5, 2), torch.zeros(4), torch.zeros(3, 2), torch.zeros(3), 2)


def test_the_representation_is_the_encoders_output_with_the_noise_off():
    torch.manual_seed(0)
    ib = build_network("allcnn32", (3, 32, 32), 10, width=0.05, beta=1e-3, num_data=100)
    loader = type("Loader", (), {"mean": torch.full((1, 3, 1, 1), 0.5), "std": torch.full((1, 3, 1, 1), 0.25)})()
    x = torch.randint(0, 256, (7, 3, 32, 32), dtype=torch.uint8)
    ib.eval()
    with torch.no_grad():
        r = exp.representations(ib, loader, x)
        expected = ib.encoder((x.float() / 255 - 0.5) / 0.25).flatten(1)
    assert r.shape == (7, ib.encoder.out_channels * 8 * 8)
    assert_close(r, expected)
    assert_close(exp.representations(ib, loader, x), r)  # no noise: the same every time


def test_the_grids_hold_binary_dropout_and_a_beta_axis_with_zero():
    cpu = exp.build(StudyOptions(device="cpu"))
    assert cpu.settings["size"] == "cpu"
    labels = [r.labels for r in cpu.runs]
    assert labels == [{"method": "information", "beta": b} for b in exp.CPU.betas] + [{"method": "binary"}]
    assert 0.0 in exp.CPU.betas and 0.0 in exp.PAPER.betas
    configs = {r.name: r.config for r in cpu.runs}
    binary = configs["binary-s0"]
    assert (binary.dropout, binary.p, binary.dataset, binary.arch) == ("binary", 0.5, "occluded-cifar", "allcnn32")
    info = configs["information-beta0.001-s0"]
    assert (info.beta, info.width, info.num_train, info.num_test, info.epochs) == (1e-3, 0.25, 20_000, 2000, 8)
    assert (info.batch_size, info.milestones) == (100, [3, 5, 6])
    assert (info.optimizer, info.lr, info.weight_decay, info.alpha_max) == ("sgd", 0.05, 1e-3, 0.7)
    paper = exp.build(StudyOptions(device="cpu", extra={"size": "paper"}))
    config = paper.runs[0].config
    assert (config.width, config.num_train, config.epochs, config.milestones) == (1.0, None, 200, [80, 120, 160])
    assert len(paper.runs) == (len(exp.PAPER.betas) + 1) * exp.PAPER.seeds
    assert [r.name for r in select(cpu, {"beta": ["0.0", "0.01"]}).runs] == [
        "information-beta0-s0",
        "information-beta0.01-s0",
    ]
    assert [r.name for r in select(cpu, {"method": ["binary"]}).runs] == ["binary-s0"]
    with pytest.raises(ValueError, match="occluded: size='gpu': expected one of cpu, paper"):
        exp.build(StudyOptions(extra={"size": "gpu"}))


def test_num_train_gives_the_same_study_on_other_amounts_of_data():
    """``--set num_train=N``: every run of the chosen size on N training images, all else the size's; recorded
    in the study's settings (so a study directory of another size is refused on resume)."""
    smaller = exp.build(StudyOptions(device="cpu", extra={"num_train": 5000}))
    cpu = exp.build(StudyOptions(device="cpu"))
    assert smaller.settings["num_train"] == 5000 and cpu.settings["num_train"] == 20_000
    assert [r.name for r in smaller.runs] == [r.name for r in cpu.runs]
    for small, full in zip(smaller.runs, cpu.runs, strict=True):
        assert small.config.num_train == 5000
        assert dataclasses.replace(small.config, num_train=20_000) == full.config
    paper = exp.build(StudyOptions(device="cpu", extra={"size": "paper", "num_train": 30_000}))
    assert {r.config.num_train for r in paper.runs} == {30_000} and paper.runs[0].config.epochs == 200
    for bad in (0, -3, 2.5, "many", True):
        with pytest.raises(ValueError, match=rf"occluded: num_train={bad!r}: expected an integer >= 1"):
            exp.build(StudyOptions(device="cpu", extra={"num_train": bad}))


def test_the_quick_study_writes_its_table_and_figure(tmp_path, data_dir):
    assert EXPERIMENTS["occluded"] is exp.EXPERIMENT
    out = tmp_path / "out"
    options = StudyOptions(quick=True, device="cpu", data_dir=str(data_dir))
    run_experiment(exp.EXPERIMENT, options, out, log=lambda line: None, show_progress=False)
    results = json.loads((out / "results.json").read_text())
    assert results["runs_finished"] == results["runs_total"] == len(exp.QUICK.betas) + 1 and not results["failures"]
    for run in results["runs"]:
        values = run["values"]
        assert 0 <= values["nuisance_accuracy"] <= 100 and 0 < values["nuisance_chance"] < 50
        assert 0 <= values["nuisance_accuracy_noisy"] <= 100
        assert values["probe_l2"] in L2_GRID
        assert values["representation_size"] == 10 * 8 * 8  # width 0.05: 10 channels of 8x8
        assert (values.get("kl_total") is None) == (run["labels"]["method"] == "binary")
    markdown = (out / "results.md").read_text()
    binary = next(c for c in results["cells"] if c["labels"]["method"] == "binary")
    accuracy = binary["metrics"]["nuisance_accuracy"]["mean"]
    assert f"| binary |  | {binary['metrics']['test_error']['mean']:.2f} | {accuracy:.1f} |" in markdown
    assert "## Targets" in markdown and "nuisance accuracy falls as beta grows" in markdown
    assert results["figures"] == ["figures/error_and_nuisance_vs_beta.png"]
    assert (out / results["figures"][0]).read_bytes()[:8] == PNG


def test_the_evaluation_context_restores_the_batch_norm_statistics_and_the_mode():
    ib = build_network("allcnn32", (3, 32, 32), 10, width=0.05, beta=1e-3, num_data=100)
    batches = [(torch.randn(4, 3, 32, 32), torch.zeros(4, dtype=torch.long)) for _ in range(3)]
    before = {k: v.clone() for k, v in ib.state_dict().items()}
    with evaluating(ib, recalibrate=batches[:2]) as net:
        assert not net.training and not torch.is_grad_enabled()
        changed = {k for k, v in net.state_dict().items() if not torch.equal(v, before[k])}
        assert changed and all("running" in k or "num_batches" in k for k in changed)
    assert ib.training and all(torch.equal(v, before[k]) for k, v in ib.state_dict().items())


def _cell(method, beta=None, **means):
    labels = {"method": method} if beta is None else {"method": method, "beta": beta}
    return {"labels": labels, "metrics": {k: {"mean": v, "std": None, "values": [v]} for k, v in means.items()}}


def test_the_targets_section_compares_the_fall_of_the_nuisance_with_the_rise_of_the_error():
    info = [
        _cell("information", 0.0, test_error=40.0, nuisance_accuracy=30.0, probe_l2=0.1),
        _cell("information", 1e-3, test_error=42.0, nuisance_accuracy=25.0, probe_l2=1.0),
        _cell("information", 1e-2, test_error=45.0, nuisance_accuracy=20.0, probe_l2=1.0),
    ]
    binary = [_cell("binary", test_error=41.0, nuisance_accuracy=28.0)]
    lines = exp._targets(info, binary).splitlines()
    assert "- nuisance accuracy falls as beta grows: met (30.0 -> 25.0 -> 20.0 %)" in lines
    assert (
        "- from beta 0 to 0.01 the nuisance accuracy falls by 10.0 points and the task error rises by 5.0: met" in lines
    )
    assert "- binary dropout: task error 41.00 %, nuisance accuracy 28.0 %" in lines
    assert "| 0.001 | – | 1 |" in lines  # the probe's penalty per seed
    info[1]["metrics"]["nuisance_accuracy"]["mean"] = 31.0
    info[2]["metrics"]["test_error"]["mean"] = 52.0
    lines = exp._targets(info, binary).splitlines()
    assert "- nuisance accuracy falls as beta grows: not met (30.0 -> 31.0 -> 20.0 %)" in lines
    assert lines[-1].startswith("| 0.01 |")
    assert any(line.endswith("falls by 10.0 points and the task error rises by 12.0: not met") for line in lines)
