"""The ``cluttered`` experiment: information per position, the inside/outside ratio, its grids, a quick study."""

import json
import math
from types import SimpleNamespace

import pytest
import torch

from infodropout.guides.layers import sampling
from infodropout.models.zoo import build_network
from infodropout.train.data import subset, subset_index
from infodropout.train.evaluation import information_maps, read_record
from infodropout.train.studies import EXPERIMENTS, StudyOptions, run_experiment, select
from infodropout.train.studies import cluttered as exp
from infodropout.train.studies.common import run_extras
from tests.common import assert_close

PNG = b"\x89PNG\r\n\x1a\n"


def test_a_map_aligned_with_its_cells_has_the_ratio_it_was_built_with():
    maps = torch.ones(1, 4, 4)  # an 8x8 input, stride 2
    maps[0, 1:3, 1:3] = 3.0  # the four cells of the box (2, 2) - (6, 6)
    sums = exp.box_sums(maps, torch.tensor([[2, 2, 6, 6]]), (8, 8))
    assert sums.tolist() == [3.0 * 16, 16.0, 1.0 * 48, 48.0]
    assert exp.inside_outside(sums) == {"inside": 3.0, "outside": 1.0, "ratio": 3.0}


def test_a_cell_counts_inside_by_the_fraction_of_its_pixels_in_the_box():
    maps = torch.tensor([[[2.0, 0.0], [0.0, 0.0]]])  # a 4x4 input, stride 2; only the top-left cell carries
    sums = exp.box_sums(maps, torch.tensor([[1, 1, 3, 3]]), (4, 4))  # a box holding one pixel of each cell
    # inside: 4 pixels, one of them (value 2) from the top-left cell; outside: 12 pixels, three of them valued 2
    assert sums.tolist() == [2.0, 4.0, 6.0, 12.0]
    assert exp.inside_outside(sums)["ratio"] == pytest.approx((2 / 4) / (6 / 12))


def test_the_ratio_is_the_ratio_of_pixel_means_of_the_map_stretched_over_the_input():
    g = torch.Generator().manual_seed(1)
    maps = torch.rand(5, 6, 6, generator=g)  # a 24x24 input, stride 4
    x0, y0 = torch.randint(0, 14, (5,), generator=g), torch.randint(0, 14, (5,), generator=g)
    boxes = torch.stack([x0, y0, x0 + torch.randint(3, 10, (5,), generator=g), y0 + 9], 1)  # (5, 4)
    pixels = maps.repeat_interleave(4, 1).repeat_interleave(4, 2)  # (5, 24, 24)
    rows, cols = torch.arange(24)[None, :, None], torch.arange(24)[None, None, :]
    across = (cols >= boxes[:, 0, None, None]) & (cols < boxes[:, 2, None, None])  # (5, 1, 24)
    down = (rows >= boxes[:, 1, None, None]) & (rows < boxes[:, 3, None, None])  # (5, 24, 1)
    inside = across & down  # (5, 24, 24)
    expected = pixels[inside].double().mean() / pixels[~inside].double().mean()
    measured = exp.inside_outside(exp.box_sums(maps, boxes, (24, 24)))
    assert measured["ratio"] == pytest.approx(float(expected), rel=1e-12)
    assert measured["inside"] == pytest.approx(float(pixels[inside].double().mean()), rel=1e-12)
    # pooling over batches is summing their sums
    halves = exp.box_sums(maps[:2], boxes[:2], (24, 24)) + exp.box_sums(maps[2:], boxes[2:], (24, 24))
    assert_close(halves, exp.box_sums(maps, boxes, (24, 24)), rtol=1e-12)


def test_maps_that_do_not_tile_the_input_and_empty_outsides_are_named():
    with pytest.raises(ValueError, match="a map of 5x5 positions does not tile an input of 8x8 pixels"):
        exp.box_sums(torch.ones(1, 5, 5), torch.tensor([[0, 0, 4, 4]]), (8, 8))
    with pytest.raises(ValueError, match=r"boxes: expected shape \(2, 4\)"):
        exp.box_sums(torch.ones(2, 4, 4), torch.tensor([[0, 0, 4, 4]]), (8, 8))
    whole = exp.box_sums(torch.ones(1, 2, 2), torch.tensor([[0, 0, 4, 4]]), (4, 4))  # nothing outside
    assert math.isnan(exp.inside_outside(whole)["outside"]) and math.isnan(exp.inside_outside(whole)["ratio"])
    assert exp.inside_outside(torch.tensor([2.0, 4.0, 0.0, 12.0]))["ratio"] == math.inf


@pytest.fixture
def network():
    torch.manual_seed(0)
    ib = build_network("allcnn96", (1, 32, 32), 10, width=0.1, beta=1e-3, alpha_max=1.0, num_data=100)
    with torch.no_grad():  # spread alpha and the ReLUs away from their initial values
        for p in ib.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return ib.eval()


def test_the_maps_summed_over_positions_are_the_information_of_each_layer(network):
    x = torch.randn(3, 1, 32, 32)
    torch.manual_seed(7)
    maps = information_maps(network, x)
    torch.manual_seed(7)  # the same draw of the noise
    information = network.information(x)
    assert list(maps) == list(exp.SITES)
    assert [tuple(m.shape) for m in maps.values()] == [(3, 16, 16), (3, 8, 8), (3, 4, 4), (3, 2, 2)]
    for site, m in maps.items():
        assert_close(m.sum((1, 2)), information[site], rtol=1e-5)


def test_the_first_layers_map_is_minus_log_alpha_summed_over_the_channels_that_are_on(network):
    x = torch.randn(2, 1, 32, 32)
    block = network.encoder.blocks[0]
    layer = block[2]
    with torch.no_grad():
        h = block[1](block[0](x))  # the deterministic input of z1
        on = torch.relu(layer.f_head(h)) > 0
        expected = torch.where(on, -torch.log(layer.alpha(h) / layer.max_alpha), 0.0).sum(1)  # (2, 16, 16)
        measured = information_maps(network, x)["z1"]
    assert_close(measured, expected, rtol=1e-5, atol=1e-6)
    assert bool((~on).any()) and bool(on.any())  # both kinds of unit are there


def test_a_dense_layer_has_no_map():
    ib = build_network("mlp", (1, 8, 8), 10, hidden=[6], beta=1e-3, num_data=10).eval()
    with pytest.raises(
        ValueError, match=r"site 'z1': expected a convolutional layer \(C, H, W\), got event shape \(6,\)"
    ):
        information_maps(ib, torch.randn(2, 1, 8, 8))


def test_a_run_keeps_the_examples_the_trainer_keeps():
    x = torch.arange(50)[:, None]
    for n, seed in ((None, 0), (20, 3), (50, 1), (80, 2)):
        assert torch.equal(subset(x, x[:, 0], n, seed)[0], x[subset_index(50, n, seed)])


def test_extras_of_images_that_are_not_the_runs_are_refused(data_dir):
    config = SimpleNamespace(dataset="cluttered-mnist", data_dir=str(data_dir), seed=0, num_train=None, num_test=4)
    test = SimpleNamespace(x=torch.zeros(4, 1, 96, 96, dtype=torch.uint8))
    trainer = SimpleNamespace(config=config, data=SimpleNamespace(test=test), device=torch.device("cpu"))
    with pytest.raises(ValueError, match=r"cluttered-mnist \(seed 0\): the test images made again differ"):
        run_extras(trainer, "test", ["boxes"], n_train=2)


def test_the_grids_follow_the_device_and_restrict_by_beta():
    cpu = exp.build(StudyOptions(device="cpu"))
    assert cpu.settings["size"] == "cpu" and len(cpu.runs) == len(exp.CPU.betas) * exp.CPU.seeds
    config = cpu.runs[0].config
    assert (config.width, config.num_train, config.num_test, config.epochs) == (0.25, 12_000, 1000, 10)
    assert (config.batch_size, config.optimizer, config.lr, config.milestones) == (32, "adam", 1e-3, [4, 8])
    assert config.alpha_max == 1.0 and config.arch == "allcnn96" and config.recalibrate_batches == 20
    assert all(r.measure == exp.MEASURE for r in cpu.runs)
    paper = exp.build(StudyOptions(device="cpu", extra={"size": "paper"}))
    config = paper.runs[0].config
    assert (config.width, config.num_train, config.epochs, config.milestones) == (1.0, None, 80, [30, 60])
    assert (config.batch_size, config.optimizer, config.lr) == (128, "sgd", 0.01)  # the preset's
    assert [r.labels["beta"] for r in paper.runs] == [b for b in exp.PAPER.betas for _ in range(exp.PAPER.seeds)]
    chosen = select(cpu, {"beta": ["1e-05"]})
    assert [r.name for r in chosen.runs] == ["beta1e-05-s0"]
    with pytest.raises(ValueError, match="cluttered: size='huge': expected one of cpu, paper"):
        exp.build(StudyOptions(extra={"size": "huge"}))
    with pytest.raises(ValueError, match=r"cluttered: unknown option\(s\) \['betas'\]"):
        exp.build(StudyOptions(extra={"betas": [1]}))
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="cluttered --device cuda: no CUDA device is available here"):
            exp.build(StudyOptions(device="cuda"))
        assert exp.build(StudyOptions(device="auto")).settings["size"] == "cpu"


def test_the_quick_study_writes_its_tables_maps_and_figures(tmp_path, data_dir):
    assert EXPERIMENTS["cluttered"] is exp.EXPERIMENT
    out = tmp_path / "out"
    lines = []
    options = StudyOptions(quick=True, device="cpu", data_dir=str(data_dir))
    run_experiment(exp.EXPERIMENT, options, out, log=lines.append, show_progress=False)
    results = json.loads((out / "results.json").read_text())
    assert results["runs_finished"] == results["runs_total"] == len(exp.QUICK.betas) and not results["failures"]
    assert [c["labels"] for c in results["cells"]] == [{"beta": b} for b in exp.QUICK.betas]
    for run in results["runs"]:
        values = run["values"]
        for site in exp.SITES:
            assert values[f"ratio.{site}"] == pytest.approx(values[f"inside.{site}"] / values[f"outside.{site}"])
            assert values[f"inside.{site}"] >= 0 and values[f"outside.{site}"] > 0
        # z1 sees the input without noise: its information is the test KL of the evaluation, to rounding
        assert values["information.z1"] == pytest.approx(values["test_kl.z1"], rel=1e-4)
        saved = read_record(out / "runs" / run["name"])["maps"].to_dataset()  # the run's record
        assert saved["images"].shape == (3, 1, 96, 96) and saved["boxes"].shape == (3, 4)
        assert [saved[f"map_{s}"].shape for s in exp.SITES] == [(3, 48, 48), (3, 24, 24), (3, 12, 12), (3, 6, 6)]
    cell = results["cells"][0]
    assert cell["metrics"]["ratio.z2"]["values"] == [results["runs"][0]["values"]["ratio.z2"]]
    markdown = (out / "results.md").read_text()
    for heading in ("## Inside / outside information ratio", "## Information per position", "## Targets"):
        assert heading in markdown
    assert f"| {exp.QUICK.betas[0]} | {cell['metrics']['ratio.z1']['mean']:.2f} |" in markdown
    figures = ["figures/information_maps_beta0.0001.png", "figures/information_maps_beta0.001.png"]
    figures.append("figures/ratio_vs_beta.png")
    assert results["figures"] == figures
    for figure in figures:
        assert (out / figure).read_bytes()[:8] == PNG
    assert any(line.startswith("[2/2] beta0.001-s0  ratio.z1 ") for line in lines)


def test_information_needs_a_noise_draw_only_past_the_first_layer(network):
    x = torch.randn(2, 1, 32, 32)
    first, second = information_maps(network, x), information_maps(network, x)
    assert torch.equal(first["z1"], second["z1"])  # alpha of z1 depends on x alone
    with sampling(False):  # the maps force the noise on, whatever the caller asks
        assert_close(information_maps(network, x)["z1"], first["z1"])


def _cell(beta, **means):
    return {
        "labels": {"beta": beta},
        "metrics": {k.replace("_", "."): {"mean": v, "std": None} for k, v in means.items()},
    }


def test_the_targets_section_reads_the_ratios_it_is_given():
    cells = [
        _cell(1e-6, ratio_z1=1.5, ratio_z2=2.0, ratio_z3=1.1, ratio_z4=1.2),
        _cell(1e-5, ratio_z1=2.5, ratio_z2=0.9, ratio_z3=1.1, ratio_z4=1.3),
    ]
    lines = exp._targets(cells).splitlines()
    assert "- ratio > 1 at every noisy layer and beta: not met: z2 at beta 1e-05 (0.90)" in lines
    assert "- z1 increasing with beta: met (1.50 -> 2.50)" in lines
    assert "- z2 increasing with beta: not met (2.00 -> 0.90)" in lines
    assert "- z3 increasing with beta: not met (1.10 -> 1.10)" in lines  # equal is not increasing
    assert "- z4 increasing with beta: met (1.20 -> 1.30)" in lines
    assert "- ratio > 1 at every noisy layer and beta: met" in exp._targets(cells[:1])
