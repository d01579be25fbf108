"""The study runner: one run directory per configuration, skip and resume, failures, workers, aggregation."""

import json
import statistics

import pytest
import torch

from infodropout.train.checkpoint import load_checkpoint
from infodropout.train.config import resolve
from infodropout.train.run import Interrupted, Trainer
from infodropout.train.studies import Column, Experiment, RunSpec, Study, StudyOptions, run_study, select
from infodropout.train.studies.experiment import write_results
from infodropout.train.studies.runner import prepare_out


def _config(seed=0, **changes):
    base = dict(dataset="digits", hidden=[8, 8], epochs=2, batch_size=50, num_train=300, device="cpu", seed=seed)
    return resolve("mnist-mlp", overrides={**base, **changes})


def _study(name="toy", seeds=(0, 1), measure=None, options=None, **changes):
    runs = [
        RunSpec(f"{kind}-s{seed}", _config(seed, dropout=kind, **changes), {"dropout": kind}, measure, options or {})
        for kind in ("information", "binary")
        for seed in seeds
    ]
    return Study(name, runs, primary="test_error", settings={"kind": "toy"})


def _quiet(**kwargs):
    return dict(log=lambda line: None, show_progress=False, **kwargs)


def _values(outcome):
    return {r["name"]: {k: v for k, v in r["values"].items() if "seconds" not in k} for r in outcome.results}


def test_a_study_trains_one_run_directory_each_and_aggregates_over_seeds(tmp_path):
    study = _study(measure="measures:test_error_twice")
    outcome = run_study(study, tmp_path / "out", **_quiet())
    assert not outcome.failures and [r["name"] for r in outcome.results] == [s.name for s in study.runs]
    for spec in study.runs:
        run = tmp_path / "out" / "runs" / spec.name
        final = json.loads((run / "metrics.json").read_text())
        result = json.loads((run / "result.json").read_text())
        assert result["values"]["test_error"] == final["test_error"]
        assert result["values"]["twice_error"] == pytest.approx(2 * final["test_error"])
        if spec.labels["dropout"] == "information":
            assert result["values"]["kl_total"] == pytest.approx(sum(final["kl_per_layer"].values()))
        else:  # no learned noise, no information term
            assert final["kl_per_layer"] == {} and "kl_total" not in result["values"]
        assert json.loads((run / "config.json").read_text())["config"] == spec.config.to_dict()
    experiment = Experiment("toy", "A toy study.", lambda o: study, lambda s: [Column("test_error", "error")])
    results = write_results(experiment, outcome, 1.0)
    by_kind = {c["labels"]["dropout"]: c for c in results["cells"]}
    for kind, cell in by_kind.items():
        errors = [
            json.loads((tmp_path / "out" / "runs" / f"{kind}-s{s}" / "metrics.json").read_text())["test_error"]
            for s in (0, 1)
        ]
        summary = cell["metrics"]["test_error"]
        assert cell["seeds"] == [0, 1] and summary["values"] == errors
        assert summary["mean"] == pytest.approx(statistics.mean(errors))
        assert summary["std"] == pytest.approx(statistics.stdev(errors))
    saved = json.loads((tmp_path / "out" / "results.json").read_text())
    assert saved["cells"] == json.loads(json.dumps(results["cells"]))
    table = (tmp_path / "out" / "results.md").read_text()
    mean, std = by_kind["binary"]["metrics"]["test_error"]["mean"], by_kind["binary"]["metrics"]["test_error"]["std"]
    assert f"| binary | {mean:.2f} ± {std:.2f} | 2 |" in table


def test_resume_skips_finished_runs_and_resumes_an_interrupted_one_exactly(tmp_path):
    study = _study(seeds=(0,))
    whole = run_study(study, tmp_path / "whole", **_quiet())
    out = prepare_out(study, tmp_path / "parts", resume=False)
    first, second = study.runs
    Trainer.start(first.config, out / "runs" / first.name, **_quiet()).fit()
    from infodropout.train.studies.runner import execute_run

    execute_run({"spec": first.to_dict(), "run_dir": str(out / "runs" / first.name), "threads": None})
    finished = out / "runs" / first.name / "result.json"
    stamp = finished.stat().st_mtime_ns
    with pytest.raises(Interrupted):
        Trainer.start(second.config, out / "runs" / second.name, **_quiet()).fit(stop_after_steps=8)
    lines = []
    resumed = run_study(study, out, resume=True, log=lines.append, show_progress=False)
    assert finished.stat().st_mtime_ns == stamp  # not trained again
    assert lines[0] == "toy: 1 of 2 runs already finished, 1 to go"
    assert "resuming at epoch 2 of 2" in (out / "runs" / second.name / "train.log").read_text()
    assert _values(resumed) == _values(whole)
    a = load_checkpoint(tmp_path / "whole" / "runs" / second.name / "checkpoint.pt")["model"]
    b = load_checkpoint(out / "runs" / second.name / "checkpoint.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_directory_holding_anything_else_is_refused_before_training(tmp_path):
    out = tmp_path / "out"
    run_study(_study(seeds=(0,)), out, **_quiet())
    manifest = (out / "study.json").read_text()
    with pytest.raises(FileExistsError, match="holds this study already; add --resume"):
        run_study(_study(seeds=(0,)), out, **_quiet())
    with pytest.raises(ValueError, match="holds the study 'toy', not 'other'"):
        run_study(_study("other", seeds=(0,)), out, resume=True, **_quiet())
    with pytest.raises(ValueError, match=r"run 'information-s0' configured otherwise \(epochs\)"):
        run_study(_study(seeds=(0,), epochs=3), out, resume=True, **_quiet())
    assert (out / "study.json").read_text() == manifest
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    with pytest.raises(FileExistsError, match="holds no study"):
        run_study(_study(seeds=(0,)), tmp_path / "mine", **_quiet())
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="is a file"):
        run_study(_study(seeds=(0,)), tmp_path / "file", **_quiet())
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep"


def test_a_failing_run_is_reported_and_the_others_finish(tmp_path):
    study = _study(seeds=(0,), epochs=1, measure="measures:fail_for", options={"fail": "binary-s0"})
    lines = []
    outcome = run_study(study, tmp_path / "out", log=lines.append, show_progress=False)
    assert [r["name"] for r in outcome.results] == ["information-s0"]
    assert outcome.failures == {"binary-s0": "RuntimeError: measurement failed on purpose in binary-s0"}
    assert "binary-s0: FAILED (RuntimeError: measurement failed on purpose in binary-s0)" in lines
    assert "RuntimeError" in (tmp_path / "out" / "runs" / "binary-s0" / "failure.txt").read_text()
    assert not (tmp_path / "out" / "runs" / "binary-s0" / "result.json").exists()


def test_a_pool_of_workers_gives_the_in_process_results_and_retries_a_run_whose_worker_died(tmp_path):
    options = {"die": ["binary-s0"], "markers": str(tmp_path / "markers")}
    study = _study(seeds=(0,), epochs=1, measure="measures:die_once", options=options)
    marker = tmp_path / "markers" / "binary-s0"
    marker.parent.mkdir()
    marker.write_text("in this process: do not die")
    alone = run_study(study, tmp_path / "alone", threads=1, **_quiet())
    marker.unlink()
    lines = []
    pooled = run_study(study, tmp_path / "pool", jobs=2, threads=1, log=lines.append, show_progress=False)
    assert any(line.startswith("binary-s0: its worker was lost (BrokenProcessPool") for line in lines)
    assert not pooled.failures and _values(pooled) == _values(alone)


def test_alone_the_die_once_measurement_really_ends_the_process(tmp_path):
    # the pool test above relies on a worker ending; in process the same measurement would end pytest,
    # so run it in a child interpreter and read its exit code
    import subprocess
    import sys

    code = (
        "import measures, pathlib; "
        f"measures.die_once(None, pathlib.Path({str(tmp_path / 'binary-s0')!r}), "
        f"{{'die': ['binary-s0'], 'markers': {str(tmp_path / 'm')!r}}})"
    )
    from conftest import REPO

    done = subprocess.run([sys.executable, "-c", code], cwd=REPO / "tests", capture_output=True)
    assert done.returncode == 3 and (tmp_path / "m" / "binary-s0").is_file()


def test_selecting_part_of_a_grid_names_the_axes_and_values(tmp_path):
    study = _study(seeds=(0, 1))
    assert [r.name for r in select(study, {"dropout": ["binary"]}).runs] == ["binary-s0", "binary-s1"]
    with pytest.raises(ValueError, match="has no axis 'width'; its axes: dropout"):
        select(study, {"width": ["64"]})
    with pytest.raises(ValueError, match="not in the grid; dropout takes binary, information"):
        select(study, {"dropout": ["spike"]})
    part = select(study, {"dropout": ["binary"]})
    run_study(part, tmp_path / "out", **_quiet())
    rest = run_study(study, tmp_path / "out", resume=True, **_quiet())  # the whole grid, same directory
    assert len(rest.results) == 4


def test_study_options_reject_zero_seeds():
    with pytest.raises(ValueError, match="--seeds 0: expected an integer >= 1"):
        StudyOptions(seeds=0)


def test_a_study_written_before_an_option_was_added_still_resumes(tmp_path):
    study = _study(seeds=(0,), epochs=1)
    run_study(study, tmp_path / "out", **_quiet())
    path = tmp_path / "out" / "study.json"
    manifest = json.loads(path.read_text())
    for run in manifest["runs"]:
        del run["config"]["binarize"]  # as written by a version without the option
    path.write_text(json.dumps(manifest))
    again = run_study(study, tmp_path / "out", resume=True, **_quiet())
    assert len(again.results) == 2


def test_a_study_written_before_a_setting_was_recorded_still_resumes(tmp_path):
    """A setting added since (``lr``: None, the preset's) reads as the preset's in an older study.json;
    a setting with a value of its own is still a different study."""
    path = tmp_path / "out" / "study.json"
    run_study(_study(seeds=(0,), epochs=1), tmp_path / "out", **_quiet())
    newer = _study(seeds=(0,), epochs=1)
    newer = Study(newer.name, newer.runs, primary=newer.primary, settings={"kind": "toy", "lr": None})
    assert len(run_study(newer, tmp_path / "out", resume=True, **_quiet()).results) == 2
    assert "lr" not in json.loads(path.read_text())["settings"]  # the directory is left as it was
    other = Study(newer.name, newer.runs, primary=newer.primary, settings={"kind": "toy", "lr": 0.1})
    with pytest.raises(ValueError, match="with other settings"):
        run_study(other, tmp_path / "out", resume=True, **_quiet())
