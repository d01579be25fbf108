"""The study commands end to end in their quick modes: the files they write, and bad input."""

import json

import pytest

from infodropout.train.cli import main

PNG = b"\x89PNG\r\n\x1a\n"


def _png(path):
    assert path.is_file() and path.read_bytes()[:8] == PNG, path


def test_reproduce_mnist_sizes_quick_writes_tables_and_a_figure(tmp_path, data_dir, capsys):
    out = tmp_path / "sizes"
    args = ["reproduce", "mnist-sizes", "--quick", "--device", "cpu", "--out", str(out), "--grid", "width=16"]
    assert main([*args, "--data-dir", str(data_dir)]) == 0
    results = json.loads((out / "results.json").read_text())
    cells = {c["labels"]["method"]: c for c in results["cells"]}
    assert set(cells) == {"information", "binary", "gaussian", "vib"}
    for method, cell in cells.items():
        run = json.loads((out / "runs" / f"{method}-w16-s0" / "metrics.json").read_text())
        assert cell["metrics"]["test_error"]["values"] == [run["test_error"]]
    assert set(cells["information"]["metrics"]) >= {"kl_total", "kl_total_exact", "kl_total_authors"}
    assert "kl_per_layer.z3" in cells["vib"]["metrics"] and "kl_total" not in cells["binary"]["metrics"]
    table = (out / "results.md").read_text()
    assert "| information | 16 |" in table and "## Information per layer" in table
    assert (
        "- schedule: 1 epoch, no lr step (too few epochs): the paper's schedule (the `mnist-mlp` preset: 120 "
        "epochs, lr x0.1 after 40, 80) compressed to the same fractions;" in table
    )
    assert "- machine: " in table and "CPUs" in table
    _png(out / "figures" / "test_error_vs_width.png")
    lines = capsys.readouterr().out.splitlines()
    assert sum(line.startswith("[") and "test_error" in line for line in lines) == 4


def test_reproduce_cifar_widths_quick(tmp_path, data_dir):
    out = tmp_path / "cifar"
    assert main(["reproduce", "cifar-widths", "--quick", "--device", "cpu", "--out", str(out),
                 "--data-dir", str(data_dir)]) == 0  # fmt: skip
    results = json.loads((out / "results.json").read_text())
    assert {c["labels"]["method"] for c in results["cells"]} == {"information", "binary"}
    _png(out / "figures" / "test_error_vs_width.png")
    table = (out / "results.md").read_text()
    assert "## Against the paper's setting" in table and "200 epochs, lr x0.1 after 80, 120, 160" in table
    assert "- data: the offline JPEG copy of CIFAR-10" in table


def test_compare_priors_quick_writes_the_report_the_metrics_and_the_arviz_files(tmp_path):
    from infodropout.train.evaluation import read_record

    out = tmp_path / "priors"
    args = ["compare-priors", "--quick", "--device", "cpu", "--out", str(out), "--priors", "factorised,correlated"]
    assert main([*args, "--betas", "4"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert {(c["labels"]["prior"], c["labels"]["beta"]) for c in results["cells"]} == {
        ("factorised", 4.0),
        ("correlated", 4.0),
    }
    run = out / "runs" / "factorised-b4-s0"
    measured = json.loads((run / "disentanglement.json").read_text())
    values = json.loads((run / "result.json").read_text())["values"]
    assert values["mig"] == measured["metrics"]["mig"]["all"]["mig"]
    assert values["mig_no_shape"] == measured["metrics"]["mig"]["no-shape"]["mig"]
    assert measured["factor_sets"]["no-shape"] == ["scale", "orientation", "posX", "posY"]
    saved = read_record(run)["likelihood"].to_dataset()  # the run's record
    assert saved["log_weight"].values[0].shape == (20, 50) and values["log_likelihood"] == pytest.approx(
        saved["log_likelihood"].values.mean()
    )
    report = (out / "report.md").read_text()
    assert "## Targets" in report and "Best MIG of the study (target >= 0.30)" in report
    assert "## Held-out log-likelihood (PSIS)" in report and "## KL per latent dimension" in report
    assert "## Learning curves" in report and "| factorised | 2 / 4 |" in report  # a point every 2 of 4 steps
    verdicts = json.loads((out / "results.json").read_text())["verdicts"]
    assert {v["metric"] for v in verdicts} >= {"mig", "total_correlation", "log_likelihood"}
    for v in verdicts:  # one line per pair and metric, in the report too
        assert v["line"].startswith("factorised − correlated, ") and f"- {v['line']}" in report
    curve = [json.loads(line) for line in (run / "curve.jsonl").read_text().splitlines()]
    assert [p["step"] for p in curve] == [2, 4] and {"mig", "total_correlation", "test_elbo"} <= set(curve[0])
    assert values["mig_log_location"] == values["mig"] and "mig_mean" in values and "sap_mean" in values
    for name in ("mig_vs_beta", "total_correlation_vs_beta", "traversals_factorised_beta4", "curves_beta4",
                 "mutual_information_correlated_beta4", "kl_per_dim_beta4"):  # fmt: skip
        _png(out / "figures" / f"{name}.png")


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["compare-priors", "--quick", "--priors", "factorised,gamma"],
            "--priors: unknown 'gamma'; registered priors:",
        ),
        (["compare-priors", "--quick", "--metrics", "mig,beauty"], "metrics: unknown 'beauty'; expected some of"),
        (["compare-priors", "--quick", "--priors", "log-uniform"], "--priors log-uniform: an improper prior"),
        (["reproduce", "mnist-sizes", "--quick", "--grid", "depth=3"], "has no axis 'depth'; its axes: method, width"),
        (["reproduce", "mnist-sizes", "--quick", "--set", "depth=3"], "--set depth: mnist-sizes takes no options"),
        (["reproduce", "cluttered", "--set", "size=big"], "cluttered: size='big': expected one of cpu, paper"),
    ],
)
def test_bad_study_input_is_a_one_line_error_before_any_run(args, message, tmp_path, capsys):
    out = tmp_path / "out"
    assert main([*args, "--out", str(out), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err
    assert not out.exists()


def test_missing_data_is_named_before_any_run(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("INFODROPOUT_DATA", str(tmp_path / "nothing"))
    monkeypatch.setenv("INFODROPOUT_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "out"
    assert main(["reproduce", "mnist-sizes", "--quick", "--out", str(out), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "MNIST not found" in err and err.count("\n") == 1 and not out.exists()


def test_a_directory_of_another_study_is_refused(tmp_path, data_dir, capsys):
    out = tmp_path / "out"
    common = ["--quick", "--device", "cpu", "--out", str(out), "--data-dir", str(data_dir)]
    assert main(["reproduce", "mnist-sizes", *common, "--grid", "width=16", "--grid", "method=binary"]) == 0
    capsys.readouterr()
    assert main(["reproduce", "cifar-widths", *common, "--resume"]) == 2
    assert "holds the study 'mnist-sizes', not 'cifar-widths'" in capsys.readouterr().err


def test_selections_of_one_grid_join_its_directory_and_its_table(tmp_path, data_dir, capsys):
    """``--grid`` runs part of a grid; a later selection joins the directory with ``--resume``, and the table then
    covers both (the earlier runs read from their result.json, not run again), in the grid's order."""
    out = tmp_path / "out"
    common = ["--quick", "--device", "cpu", "--out", str(out), "--data-dir", str(data_dir), "--grid", "width=16"]
    assert main(["reproduce", "mnist-sizes", *common, "--grid", "method=binary"]) == 0
    first = json.loads((out / "results.json").read_text())
    assert [r["name"] for r in first["runs"]] == ["binary-w16-s0"] and first["joined"] == []
    capsys.readouterr()
    assert main(["reproduce", "mnist-sizes", *common, "--grid", "method=information", "--resume"]) == 0
    both = json.loads((out / "results.json").read_text())
    assert [r["name"] for r in both["runs"]] == ["information-w16-s0", "binary-w16-s0"]
    assert both["joined"] == ["binary-w16-s0"] and both["runs"][1] == first["runs"][0]
    assert (both["runs_finished"], both["runs_total"]) == (1, 1)  # this selection's, for the exit status
    assert [c["labels"]["method"] for c in both["cells"]] == ["information", "binary"]
    assert "also holds 1 run of other selections" in (out / "results.md").read_text()
    assert "binary-w16-s0" not in capsys.readouterr().out  # read, not run again


def _protocol_args(*extra):
    from infodropout.train.cli import build_parser

    return build_parser().parse_args(["compare-priors", "--protocol", "cpu-2h", "--out", "unused", *extra])


@pytest.mark.parametrize("has_bf16", [True, False])
def test_a_protocol_fills_the_options_not_given_and_trains_in_fp32_on_a_cpu_without_bf16(has_bf16, monkeypatch, capsys):
    from infodropout.train.studies import cli
    from infodropout.train.studies.priors import PROTOCOLS

    monkeypatch.setattr("infodropout.train.engine.cpu_has_bf16", lambda: has_bf16)
    args = _protocol_args("--device", "cpu", "--seeds", "5", "--betas", "2,8")
    cli.apply_protocol(args)
    chosen = PROTOCOLS["cpu-2h"].options
    assert args.seeds == 5 and args.betas == [2.0, 8.0]  # given: kept
    assert (args.priors, args.steps, args.lr, args.jobs, args.threads) == (
        chosen["priors"], chosen["steps"], chosen["lr"], chosen["jobs"], chosen["threads"]
    )  # fmt: skip
    assert args.precision == ("bf16" if has_bf16 else "fp32") and args.channels_last is True
    err = capsys.readouterr().err
    assert ("this one has not: fp32" in err) != has_bf16
    assert args.priors is not chosen["priors"]  # a copy: the protocol is not changed by the run


def test_compare_priors_protocol_quick_runs_its_grid_and_records_its_name(tmp_path):
    out = tmp_path / "priors"
    args = ["compare-priors", "--protocol", "cpu-2h", "--quick", "--device", "cpu", "--out", str(out)]
    small = ["--steps", "4", "--batch-size", "16", "--seeds", "1", "--jobs", "1", "--precision", "fp32"]
    assert main([*args, *small]) == 0
    study = json.loads((out / "results.json").read_text())
    assert study["settings"]["protocol"] == "cpu-2h" and study["settings"]["lr"] == 5e-4
    assert {(c["labels"]["prior"], c["labels"]["beta"]) for c in study["cells"]} == {
        ("factorised", 4.0),
        ("correlated", 4.0),
    }
    config = json.loads((out / "runs" / "factorised-b4-s0" / "config.json").read_text())["config"]
    assert config["lr"] == 5e-4 and config["channels_last"] is True and config["precision"] == "fp32"


def test_a_target_reads_its_verdict_met_missed_or_not_distinguishable():
    from infodropout.train.studies.priors import _judged

    assert _judged({"estimate": 0.1, "low": 0.02, "high": 0.2, "excludes_zero": True}, +1) == "met"
    assert _judged({"estimate": 0.1, "low": 0.02, "high": 0.2, "excludes_zero": True}, -1) == "missed"
    spans = {"estimate": -0.01, "low": -0.05, "high": 0.03, "excludes_zero": False}
    assert _judged(spans, +1) == "higher not even in the mean, not distinguishable (-0.050, +0.030)"
    one_seed = {"estimate": 0.01, "low": float("nan"), "high": float("nan"), "excludes_zero": False}
    assert _judged(one_seed, +1) == "higher in the mean; no interval (one seed)"
    assert _judged(None, +1) == "–"
