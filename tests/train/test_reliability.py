"""Reliability: one owner per directory, exit statuses that say failure, every bad input one line.

The table of issue 23 row by row (two real processes for the locks, a loopback server that is not Dask),
issue 20's unwritable directories and damaged files, and :func:`test_every_bad_input_is_one_line`, which
drives every command's parser and every file the project reads through its damaged forms.

A read-only directory is made with ``chattr +i`` (the immutable attribute): the tests run as root, which
ignores permission bits, and a read-only mount needs privileges a test does not have; the kernel refuses
root every change inside an immutable directory (creating, renaming, removing an entry: ``EPERM``), so every
write path of the code (``open``, ``mkstemp``, ``os.replace``, ``mkdir``) meets a real refusal, which
monkeypatching one function would not give. Where ``chattr`` is not available, a non-root run uses
``chmod a-w`` instead, and a root run without it skips those cases.
"""

import contextlib
import errno
import gc
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pyro
import pytest
import torch

from infodropout.train.checkpoint import load_checkpoint
from infodropout.train.cli import main
from infodropout.train.config import resolve
from infodropout.train.errors import NotWritable, one_line
from infodropout.train.ownership import LOCK_NAME, claim
from infodropout.train.run import Trainer
from infodropout.train.studies import RunSpec, Study, run_study
from infodropout.train.studies.runner import FORMAT, check_scheduler, dask_executor

REPO = Path(__file__).resolve().parents[2]
TINY = ["--dataset", "digits", "--hidden", "16", "--epochs", "1", "--batch-size", "50", "--device", "cpu"]


# -- helpers --------------------------------------------------------------------------------------------


def _env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR")}
    return {**env, "OMP_NUM_THREADS": "1", **extra}


def _spawn(*args, **popen) -> subprocess.Popen:
    """``python -m infodropout.train ARGS`` as a process of its own, with Python's default SIGINT handling
    (a test run in the background inherits SIGINT ignored)."""
    return subprocess.Popen(
        [sys.executable, "-m", "infodropout.train", *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        **popen,
    )


def _wait_for(condition, process: subprocess.Popen, what: str, seconds: float = 120.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if process.poll() is not None:
            raise AssertionError(f"{what}: the process ended first: {process.communicate()[1][-500:]}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)


def _locked_by(path: Path, pid: int) -> bool:
    try:
        return (path / LOCK_NAME).read_text().startswith(f"{pid} ")
    except OSError:
        return False


def _snapshot(root: Path) -> dict:
    """Every entry under ``root`` (lock files aside): kind, size, content hash and mode."""
    out = {}
    for path in sorted(root.rglob("*")):
        if path.name == LOCK_NAME:
            continue
        stat = path.lstat()
        digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None
        out[str(path.relative_to(root))] = (path.is_dir(), stat.st_size if digest else 0, digest, stat.st_mode)
    return out


def _fails_in_one_line(capsys, argv, status: int = 2) -> str:
    """Run the command line in this process; it must exit with ``status`` and say one line on stderr, with
    no traceback anywhere. Returns that line."""
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exit_:  # argparse
        code = exit_.code
    out, err = capsys.readouterr()
    assert code == status, f"exit status {code}, expected {status}; stderr: {err!r}"
    assert "Traceback" not in out + err
    lines = err.splitlines()
    assert len(lines) == 1 and err.endswith("\n") and lines[0].strip(), f"not one line: {err!r}"
    return lines[0]


def _immutable(path: Path, on: bool) -> bool:
    if shutil.which("chattr") is None:
        return False
    done = subprocess.run(["chattr", "+i" if on else "-i", str(path)], capture_output=True)
    return done.returncode == 0


@contextlib.contextmanager
def read_only(path: Path):
    """``path`` (a directory) read-only for this process, root included (see the module docstring)."""
    if _immutable(path, True):
        try:
            yield
        finally:
            _immutable(path, False)
        return
    if os.geteuid() == 0:
        pytest.skip("a read-only directory needs chattr +i when running as root")
    mode = path.stat().st_mode
    path.chmod(0o555)
    try:
        yield
    finally:
        path.chmod(mode)


def _quiet() -> dict:
    return dict(log=lambda line: None, show_progress=False)


def _tiny_config(**changes):
    base = dict(dataset="digits", hidden=[16], epochs=1, batch_size=50, device="cpu")
    return resolve("mnist-mlp", overrides={**base, **changes})


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    """A finished one-epoch run (copied by each test that damages it)."""
    run = tmp_path_factory.mktemp("finished") / "run"
    Trainer.start(_tiny_config(), run, **_quiet()).fit()
    return run


@pytest.fixture
def isolated(tmp_path, monkeypatch) -> Path:
    """A directory of the user's files, with the data cache elsewhere (so a snapshot sees only theirs)."""
    monkeypatch.setenv("INFODROPOUT_CACHE", str(tmp_path / "cache-outside"))
    monkeypatch.delenv("DASK_SCHEDULER_ADDRESS", raising=False)
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "TORCHELASTIC_ERROR_FILE"):
        monkeypatch.delenv(name, raising=False)
    root = tmp_path / "user"
    root.mkdir()
    return root


# -- issue 23, rows 1 and 2: one owner per run and study directory (two real processes) -----------------


def test_a_run_directory_is_owned_for_the_life_of_a_command_and_freed_when_its_process_dies(isolated, capsys):
    run = isolated / "D"
    # the first command, stopped (SIGSTOP) once it holds D and has written config.json: before any checkpoint
    slow = ["--dataset", "digits", "--hidden", "1024", "1024", "--epochs", "5", "--batch-size", "10", "--device", "cpu"]
    first = _spawn("train", "mnist-mlp", *slow, "--seed", "1", "--out", run)
    try:
        _wait_for(lambda: _locked_by(run, first.pid) and (run / "config.json").exists(), first, "the first to own D")
        os.kill(first.pid, signal.SIGSTOP)
        assert not (run / "checkpoint.pt").exists()
        held = f"run directory {run} is in use by another command (process {first.pid}:"
        second = ["train", "mnist-mlp", *TINY, "--seed", "2", "--dropout", "binary", "--out", run]
        assert held in _fails_in_one_line(capsys, second)
        assert held in _fails_in_one_line(capsys, ["resume", run])
        assert held in _fails_in_one_line(capsys, ["eval", run])
        assert json.loads((run / "config.json").read_text())["config"]["seed"] == 1  # the first's, untouched
    finally:
        first.kill()  # SIGKILL: no handler runs, the kernel drops the lock
        first.communicate(timeout=60)
    # a lock of a dead process is no lock: the directory (a run that never saved) is taken by a new run
    assert main(["train", "mnist-mlp", *TINY, "--seed", "2", "--out", str(run)]) == 0
    assert f"reusing {run}" in capsys.readouterr().out
    assert json.loads((run / "config.json").read_text())["config"]["seed"] == 2
    assert main(["eval", str(run)]) == 0


def test_a_study_directory_is_owned_by_one_command(isolated, data_dir, capsys):
    out = isolated / "S"
    args = ["reproduce", "mnist-sizes", "--quick", "--grid", "width=16", "--grid", "method=information",
            "--data-dir", data_dir, "--out", out]  # fmt: skip
    first = _spawn(*args)
    try:
        _wait_for(lambda: _locked_by(out, first.pid) and (out / "study.json").exists(), first, "the first to own S")
        os.kill(first.pid, signal.SIGSTOP)
        line = _fails_in_one_line(capsys, [*args, "--resume"])
        assert f"study directory {out} is in use by another command (process {first.pid}:" in line
        os.kill(first.pid, signal.SIGCONT)
        stdout, stderr = first.communicate(timeout=300)
    finally:
        first.kill()
    assert first.returncode == 0, stderr
    assert main([*map(str, args), "--resume"]) == 0  # the first has ended: the directory is free again
    assert "1 of 1 runs already finished" in capsys.readouterr().out


def test_ownership_is_reentrant_in_a_process_and_abandoning_removes_only_what_it_made(tmp_path):
    made = tmp_path / "new" / "dir"
    first = claim(made)
    again = claim(made)  # the same process: counted, not refused
    again.release()
    first.abandon()
    assert not made.exists() and (tmp_path / "new").exists()  # what existed before stays
    kept = tmp_path / "kept"
    kept.mkdir()
    (kept / "mine.txt").write_text("x")
    claim(kept).abandon()
    assert (kept / "mine.txt").read_text() == "x"
    with pytest.raises(NotWritable, match=r"run directory .*/absent: no such directory"):
        claim(tmp_path / "absent", create=False)


# -- row 3 and 4: a scheduler address that is not a Dask scheduler ----------------------------------------


class _Stranger:
    """A loopback TCP server that is not Dask: it accepts and says nothing, or answers every connection
    with an HTTP error page."""

    def __init__(self, http: bool):
        self.http = http
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.address = f"tcp://127.0.0.1:{self.sock.getsockname()[1]}"
        self.conns = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)
            if self.http:
                with contextlib.suppress(OSError):
                    conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/html\r\n\r\n<html>no</html>" * 8)

    def close(self):
        self.sock.close()
        for conn in self.conns:
            conn.close()


@pytest.mark.parametrize("http", [False, True], ids=["silent", "http"])
def test_a_server_that_is_not_a_dask_scheduler_is_one_line_within_the_timeout(http):
    stranger = _Stranger(http)
    try:
        start = time.monotonic()
        with pytest.raises(ValueError, match=f"^--scheduler {stranger.address}: cannot reach a Dask scheduler") as err:
            with dask_executor(stranger.address, timeout=1.0):
                pass
        assert time.monotonic() - start < 6  # the timeout, and the thread's margin
        assert "\n" not in str(err.value)
        assert ("not in Dask's protocol" in str(err.value)) if http else ("no answer in 1 s" in str(err.value))
    finally:
        stranger.close()


def test_an_address_that_does_not_parse_makes_no_client_and_leaves_nothing_to_print_at_exit(
    isolated, capsys, monkeypatch
):
    import distributed

    made = []
    monkeypatch.setattr(distributed.Client, "__init__", lambda self, *a, **k: made.append(a) or None)
    line = _fails_in_one_line(capsys, ["reproduce", "mnist-sizes", "--quick", "--scheduler", "notanaddress",
                                       "--out", isolated / "s"])  # fmt: skip
    assert "--scheduler notanaddress: cannot reach a Dask scheduler there" in line
    gc.collect()  # where a half-made Client's __del__ used to print its traceback
    assert made == [] and capsys.readouterr().err == ""
    with pytest.raises(ValueError, match="missing port number"):
        check_scheduler("notanaddress", timeout=1.0)


# -- row 5: exit status 0 only when everything asked for finished -----------------------------------------


def test_a_study_whose_runs_failed_exits_1_naming_them(isolated, capsys):
    out = isolated / "priors"
    # beta 1e300: the loss is infinite at the first step, so the run stops (a NaN/inf loss) and is reported
    args = ["compare-priors", "--quick", "--priors", "factorised", "--betas", "1e300", "--no-likelihood",
            "--device", "cpu", "--out", out]  # fmt: skip
    line = _fails_in_one_line(capsys, args, status=1)
    assert line.startswith("infodropout compare-priors: 1 of 1 runs did not finish (factorised-b1e+300-s0)")
    failure = next((out / "runs").glob("*/failure.txt"))
    assert "NonFiniteLoss" in failure.read_text()
    assert json.loads((out / "results.json").read_text())["runs_finished"] == 0


# -- row 9: under torchrun, the line once, and torchrun's report names it ---------------------------------


def test_under_torchrun_a_bad_option_is_said_once_and_named_in_torchruns_report(tmp_path):
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2"]
    command = [*launch, "-m", "infodropout.train", "train", "mnist-mlp", "--out", str(tmp_path / "r"), "--beta", "abc"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, env=_env())
    line = "infodropout train: error: argument --beta: expected a number, got 'abc' (see infodropout train --help)"
    both = done.stdout + done.stderr
    assert both.splitlines().count(line) == 1  # said by rank 0 alone
    assert f"traceback : {line}" in both and "exitcode  : 2" in both  # torchrun's report names it
    # torchrun itself always ends a failed launch with its own ChildFailedError traceback and status 1
    assert done.returncode == 1 and "ChildFailedError" in both
    assert not (tmp_path / "r").exists()


# -- row 11: Ctrl-C while the command line is still importing --------------------------------------------


def test_ctrl_c_while_importing_is_interrupted_and_status_130(tmp_path):
    process = _spawn("train", "mnist-mlp", "--out", tmp_path / "r", *TINY)
    time.sleep(0.3)  # Python is up, torch and Pyro are still loading
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert "Traceback" not in stdout + stderr
    assert stderr.strip() in ("infodropout: interrupted", "infodropout train: interrupted")


# -- issue 20: a run directory that becomes unwritable, damaged results, Pyro's tables -------------------


def test_a_run_directory_that_becomes_read_only_stops_the_run_in_one_line_and_keeps_its_checkpoint(tmp_path):
    run = tmp_path / "run"
    epochs = []

    def log(line):
        if line.startswith("epoch"):
            epochs.append(line)
            if len(epochs) == 1:  # after the first epoch's checkpoint
                if not _immutable(run, True):
                    pytest.skip("needs chattr +i")

    trainer = Trainer.start(_tiny_config(epochs=3), run, log=log, show_progress=False)
    try:
        with pytest.raises(NotWritable) as err:
            trainer.fit()
    finally:
        _immutable(run, False)
    assert str(err.value) == (
        f"{run / 'checkpoint.pt'}: cannot be written (Operation not permitted); the run stops, keeping the last "
        f"good checkpoint (the end of epoch 1) is intact; make {run} writable (or free space), then "
        f"`infodropout resume {run}`"
    )
    assert load_checkpoint(run / "checkpoint.pt")["epoch"] == 1
    assert not [p for p in run.iterdir() if p.name.endswith(".tmp")]  # no temporary file left behind
    resumed = Trainer.from_run_dir(run, **_quiet())
    assert resumed.epoch == 1
    resumed.fit()


def test_a_full_disk_while_saving_is_one_line_and_the_checkpoint_is_intact(tmp_path, monkeypatch):
    run = tmp_path / "run"
    trainer = Trainer.start(_tiny_config(epochs=2), run, **_quiet())
    saved = []

    def fsync(fd):
        if saved:  # the first checkpoint and metrics go through; then the disk is full
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        saved.append(fd)

    monkeypatch.setattr("infodropout.train.files.os.fsync", fsync)
    with pytest.raises(NotWritable) as err:
        trainer.fit()
    assert str(err.value).startswith(
        f"{run / 'metrics.jsonl'}: cannot be written (No space left on device); the run stops, keeping the last good "
        "checkpoint (the end of epoch 1) is intact"
    )
    assert load_checkpoint(run / "checkpoint.pt")["epoch"] == 1


def _study() -> Study:
    runs = [RunSpec(f"{kind}-s0", _tiny_config(dropout=kind), {"dropout": kind}) for kind in ("information", "binary")]
    return Study("toy", runs, primary="test_error")


@pytest.fixture(scope="module")
def finished_study(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("study") / "out"
    run_study(_study(), out, **_quiet())
    return out


@pytest.mark.parametrize(
    "damage, problem",
    [
        ("[1, 2]", "a list, not a table"),
        ('{"name": "x", "labels": {}, "final": {}, "measures": {}, "values": {}}', "no 'seed'"),
        ('{"name": "x", "labels": {}, "seed": 0, "final": {}, "measures": {}, "values": {"a": "b"}}', "'values' holds"),
        ("{", "not JSON"),
    ],
)
def test_a_damaged_result_is_named_and_its_run_measured_again_keeping_the_others(
    tmp_path, finished_study, damage, problem
):
    out = tmp_path / "out"
    shutil.copytree(finished_study, out)
    runs = out / "runs"
    damaged = runs / "binary-s0" / "result.json"
    damaged.write_text(damage)
    (runs / "binary-s0" / "failure.txt").write_text("an earlier try")
    kept = runs / "information-s0" / "result.json"
    stamp = kept.stat().st_mtime_ns
    checkpoint = (runs / "binary-s0" / "checkpoint.pt").stat().st_mtime_ns
    lines = []
    outcome = run_study(_study(), out, resume=True, log=lines.append, show_progress=False)
    assert lines[0].startswith(f"{damaged}: damaged ({problem}")
    assert lines[0].endswith(": the run is measured again (from its checkpoint where it has one)")
    assert not outcome.failures and len(outcome.results) == 2
    assert kept.stat().st_mtime_ns == stamp  # the other run's result untouched
    assert (runs / "binary-s0" / "checkpoint.pt").stat().st_mtime_ns == checkpoint  # measured, not trained again
    assert json.loads(damaged.read_text())["seed"] == 0
    assert not (runs / "binary-s0" / "failure.txt").exists()  # a finished run keeps no stale failure report


def test_pyros_trace_shapes_table_is_dropped_from_an_error(tmp_path):
    def model():
        with pyro.plate("data", 3):
            pyro.sample("z", pyro.distributions.Normal(torch.zeros(4), 1.0))

    with pytest.raises(ValueError) as err:
        pyro.poutine.trace(model).get_trace()
    assert "Trace Shapes:" in str(err.value) and "\n" in str(err.value)
    line = one_line(err.value)
    assert "Trace Shapes" not in line and "\n" not in line and "Shape mismatch inside plate('data')" in line


# -- every bad input: one line on stderr, a non-zero status, no traceback, no file of the user's changed --


def _study_manifest(study="mnist-sizes", **changes) -> str:
    return json.dumps({"format": FORMAT, "study": study, "settings": {}, "runs": [], **changes})


PLUGIN_RAISES = "raise ZeroDivisionError('the plugin divides by zero')\n"

#: name -> (setup(root) -> argv, what the line says). ``root`` is the user's directory; setup writes files
#: there. ``RO`` in argv marks ``root / "ro"``, made read-only around the command.
CASES = {
    # train: the parser and the options
    "train unknown preset": (lambda r: ["train", "resnet", "--out", r / "o"], "invalid choice: 'resnet'"),
    "train no --out": (lambda r: ["train", "mnist-mlp"], "the following arguments are required: --out"),
    "train --beta abc": (lambda r: ["train", "mnist-mlp", "--out", r / "o", "--beta", "abc"], "expected a number"),
    "train --epochs 0": (lambda r: ["train", "mnist-mlp", "--out", r / "o", "--epochs", "0"], "integer >= 1"),
    "train --width nan": (lambda r: ["train", "cifar-allcnn", "--out", r / "o", "--width", "nan"], "width=nan"),
    "train --seed 2^70": (
        lambda r: ["train", "mnist-mlp", "--out", r / "o", "--seed", str(2**70)],
        "expected an integer in [0, 4294967295]",
    ),
    "train binary prior": (
        lambda r: ["train", "mnist-mlp", "--out", r / "o", "--dropout", "binary", "--prior", "correlated"],
        "prior='correlated': dropout='binary' has no KL term",
    ),
    "train gaussian convention": (
        lambda r: ["train", "mnist-mlp", "--out", r / "o", "--dropout", "gaussian", "--kl-convention", "authors"],
        "kl_convention='authors'",
    ),
    "train dsprites augment": (
        lambda r: ["train", "dsprites-vae", "--out", r / "o", "--augment"],
        "augment=True: dataset='dsprites'",
    ),
    "train mlp latent options": (
        lambda r: ["train", "mnist-mlp", "--out", r / "o", "--z-dim", "3", "--latent", "information"],
        "arch='mlp' does not use it",
    ),
    "train --num-train too many": (
        lambda r: ["train", "mnist-mlp", "--out", r / "o", *TINY, "--num-train", "100000000"],
        "num_train=100000000: digits has 1,497 training examples",
    ),
    "train zero steps": (
        lambda r: ["train", "mnist-mlp", "--out", r / "o", *TINY, "--batch-size", "5000"],
        "0 optimisation steps",
    ),
    "train --dist-timeout -1": (
        lambda r: ["train", "mnist-mlp", "--out", r / "o", "--dist-timeout", "-1"],
        "expected a number of seconds > 0",
    ),
    "train unknown prior": (lambda r: ["train", "mnist-mlp", "--out", r / "o", "--prior", "bogus"], "prior='bogus'"),
    "train --out a file": (
        lambda r: (r / "afile").write_text("x") and ["train", "mnist-mlp", "--out", r / "afile", *TINY],
        "is a file",
    ),
    "train --out read-only": (lambda r: ["train", "mnist-mlp", "--out", "RO/run", *TINY], "cannot be created"),
    "train --data-dir missing": (
        lambda r: ["train", "mnist-mlp", "--out", r / "o", "--data-dir", r / "nope"],
        "nope",
    ),
    # config files
    "config truncated": (lambda r: _config(r, "c.json", '{"epochs": '), "not valid JSON"),
    "config a list": (lambda r: _config(r, "c.json", "[1, 2]"), "expected a table of options, got list"),
    "config wrong key": (lambda r: _config(r, "c.json", '{"epoch": 3}'), "unknown option(s) ['epoch']"),
    "config wrong type": (lambda r: _config(r, "c.json", '{"epochs": "ten"}'), "epochs='ten': expected an integer"),
    "config binary": (lambda r: _config(r, "c.json", b"\x00\xff\xfe"), "not text (UTF-8)"),
    "config unreadable": (lambda r: _config(r, "c.json", None), "cannot be read (Is a directory)"),
    "config yaml": (lambda r: _config(r, "c.yaml", "epochs: 3"), "unsupported format '.yaml'; supported: .json"),
    "config toml broken": (lambda r: _config(r, "c.toml", "epochs = "), "not valid TOML"),
    "config missing data_dir": (
        lambda r: _config(r, "c.json", '{"data_dir": "/nonexistent/data"}'),
        "data_dir='/nonexistent/data': no such directory",
    ),
    "config option without effect": (
        lambda r: _config(r, "c.json", '{"latent": "information"}'),
        "c.json: latent='information': arch='mlp' does not use it",
    ),
    # plug-ins
    "plugin file raises": (lambda r: _plugin(r, "bad.py"), "importing it failed (ZeroDivisionError: the plugin"),
    "plugin module raises": (lambda r: _plugin(r, "badmodule"), "importing it failed (ZeroDivisionError: the plugin"),
    "plugin file missing": (
        lambda r: ["train", "mnist-mlp", "--out", r / "o", "--plugin", r / "no.py"],
        "no such file",
    ),
    "plugin module missing": (
        lambda r: ["train", "mnist-mlp", "--out", r / "o", "--plugin", "no_such_module_xyz"],
        "cannot be imported",
    ),
    # run directories: resume and eval
    "resume a file": (lambda r: (r / "afile").write_text("x") and ["resume", r / "afile"], "(it is a file)"),
    "resume no config": (lambda r: (r / "empty").mkdir() or ["resume", r / "empty"], "no config.json"),
    "config.json truncated": (lambda r: _run(r, "config.json", '{"config": '), "not a readable run config"),
    "config.json a list": (lambda r: _run(r, "config.json", "[]"), "not a readable run config"),
    "config.json wrong keys": (lambda r: _run(r, "config.json", '{"cfg": {}}'), "not a readable run config (KeyError"),
    "config.json bad option": (
        lambda r: _run(r, "config.json", '{"config": {"bogus": 1}}'),
        "unknown option(s) ['bogus']",
    ),
    "config.json unreadable": (lambda r: _run(r, "config.json", None), "cannot be read (Is a directory)"),
    "checkpoint truncated": (lambda r: _run(r, "checkpoint.pt", "truncate"), "not a readable checkpoint"),
    "checkpoint wrong type": (lambda r: _run(r, "checkpoint.pt", '{"a": 1}'), "not a readable checkpoint"),
    "checkpoint a directory": (lambda r: _run(r, "checkpoint.pt", None), "checkpoint.pt: no checkpoint there"),
    "checkpoint of another config": (lambda r: _run(r, "config.json", "other"), "made by another configuration"),
    "eval twice": (lambda r: _run(r, "eval.json", "{}", command="eval"), "exists (an earlier evaluation)"),
    "eval read-only": (lambda r: _run(r, None, None, command="eval", read_only=True), "eval.json: cannot be written"),
    "resume read-only": (
        lambda r: _run(r, None, None, command="resume", read_only=True, unfinished=True),
        "checkpoint.pt: cannot be written (Operation not permitted); the run stops, keeping the last good checkpoint",
    ),
    # data
    "mnist truncated": (lambda r: _mnist(r, truncate=True), "train-images-idx3-ubyte.gz"),
    "mnist missing": (lambda r: _mnist(r, truncate=False), "MNIST"),
    # bench
    "bench --out a file": (lambda r: (r / "afile").write_text("x") and ["bench", "--out", r / "afile"], "is a file"),
    "bench --repeats 0": (lambda r: ["bench", "--out", r / "b", "--repeats", "0"], "integer >= 1"),
    "bench --models bogus": (lambda r: ["bench", "--out", r / "b", "--models", "bogus"], "models=['bogus']"),
    "bench --out read-only": (lambda r: ["bench", "--out", "RO/b", "--device", "cpu"], "cannot be written"),
    # demo
    "demo --epochs 0": (lambda r: ["demo", "--epochs", "0"], "integer >= 1"),
    "demo --data-dir missing": (lambda r: ["demo", "--out", r / "d", "--data-dir", r / "nope"], "nope"),
    "demo --out read-only": (lambda r: ["demo", "--out", "RO/d", "--device", "cpu"], "Operation not permitted"),
    # reproduce
    "reproduce unknown": (lambda r: ["reproduce", "resnet", "--out", r / "s"], "invalid choice: 'resnet'"),
    "reproduce quick bad size": (
        lambda r: ["reproduce", "cluttered", "--quick", "--set", "size=huge", "--out", r / "s"],
        "size='huge': expected one of cpu, paper",
    ),
    "reproduce quick size": (
        lambda r: ["reproduce", "cluttered", "--quick", "--set", "size=paper", "--out", r / "s"],
        "size='paper' with --quick",
    ),
    "reproduce --set unknown": (
        lambda r: ["reproduce", "mnist-sizes", "--quick", "--set", "foo=1", "--out", r / "s"],
        "takes no options",
    ),
    "reproduce --grid axis": (
        lambda r: ["reproduce", "mnist-sizes", "--quick", "--grid", "bogus=1", "--out", r / "s"],
        "has no axis 'bogus'",
    ),
    "reproduce --grid value": (
        lambda r: ["reproduce", "mnist-sizes", "--quick", "--grid", "width=3", "--out", r / "s"],
        "not in the grid",
    ),
    "reproduce --jobs huge": (
        lambda r: ["reproduce", "mnist-sizes", "--jobs", "100000000000", "--out", r / "s"],
        "expected an integer in [1, 1024], got 100000000000",
    ),
    "reproduce --seeds 0": (lambda r: ["reproduce", "mnist-sizes", "--seeds", "0", "--out", r / "s"], ">= 1"),
    "reproduce --seeds huge": (
        lambda r: ["reproduce", "mnist-sizes", "--seeds", "1000000", "--out", r / "s"],
        "in [1, 1000]",
    ),
    "reproduce --threads huge": (
        lambda r: ["reproduce", "mnist-sizes", "--threads", "1000000000", "--out", r / "s"],
        "in [1, 1024]",
    ),
    "reproduce --scheduler bad": (
        lambda r: ["reproduce", "mnist-sizes", "--quick", "--scheduler", "notanaddress", "--out", r / "s"],
        "cannot reach a Dask scheduler",
    ),
    "reproduce --jobs with --scheduler": (
        lambda r: ["reproduce", "mnist-sizes", "--jobs", "2", "--scheduler", "tcp://h:1", "--out", r / "s"],
        "the cluster's workers set the parallelism",
    ),
    "reproduce --out a file": (
        lambda r: (r / "afile").write_text("x") and ["reproduce", "mnist-sizes", "--quick", "--out", r / "afile"],
        "is a file",
    ),
    "reproduce --out not a study": (
        lambda r: _out(r, "notes.txt", "mine"),
        "exists, is not empty and holds no study",
    ),
    "study.json truncated": (lambda r: _out(r, "study.json", '{"format": '), "not a readable study manifest"),
    "study.json a list": (lambda r: _out(r, "study.json", "[]"), "not an infodropout study manifest"),
    "study.json wrong keys": (
        lambda r: _out(r, "study.json", _study_manifest(settings=[], runs=3)),
        "a damaged study manifest",
    ),
    "study.json unreadable": (lambda r: _out(r, "study.json", None), "cannot be read (Is a directory)"),
    "study.json another study": (lambda r: _out(r, "study.json", _study_manifest("vae")), "holds the study 'vae'"),
    "reproduce --out read-only": (
        lambda r: ["reproduce", "mnist-sizes", "--quick", "--out", "RO/s"],
        "study directory",
    ),
    # compare-priors
    "priors --betas empty": (lambda r: ["compare-priors", "--betas", "", "--out", r / "p"], "none given"),
    "priors --priors empty": (lambda r: ["compare-priors", "--priors", "", "--out", r / "p"], "none given"),
    "priors unknown prior": (lambda r: ["compare-priors", "--priors", "bogus", "--out", r / "p"], "unknown 'bogus'"),
    "priors unknown metric": (lambda r: ["compare-priors", "--metrics", "bogus", "--out", r / "p"], "bogus"),
    "priors --betas nan": (lambda r: ["compare-priors", "--betas", "nan", "--out", r / "p"], "finite numbers"),
    "priors quick settings": (
        lambda r: ["compare-priors", "--quick", "--metric-settings", "full", "--out", r / "p"],
        "--metric-settings full with --quick",
    ),
    "priors plugin raises": (lambda r: _plugin(r, "bad.py", "compare-priors"), "importing it failed"),
    "priors --epochs": (lambda r: ["compare-priors", "--epochs", "3", "--out", r / "p"], "unrecognized arguments"),
}
if not torch.cuda.is_available():
    CASES["train --device cuda"] = (
        lambda r: ["train", "mnist-mlp", "--out", r / "o", *TINY[:-2], "--device", "cuda"],
        "no CUDA device is available here",
    )
    CASES["reproduce --device cuda"] = (
        lambda r: ["reproduce", "mnist-sizes", "--quick", "--device", "cuda", "--out", r / "s"],
        "--device cuda: no CUDA device is available here",
    )


def _config(root: Path, name: str, content) -> list:
    path = root / name
    if content is None:
        path.mkdir()
    elif isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    return ["train", "mnist-mlp", "--out", root / "o", "--config", path]


def _plugin(root: Path, name: str, command: str = "train") -> list:
    if name.endswith(".py"):
        (root / name).write_text(PLUGIN_RAISES)
        plugin = root / name
    else:
        package = root / "plugins"
        package.mkdir()
        (package / f"{name}.py").write_text(PLUGIN_RAISES)
        sys.path.insert(0, str(package))  # removed by the test
        plugin = name
    if command == "train":
        return ["train", "mnist-mlp", "--out", root / "o", "--plugin", plugin]
    return ["compare-priors", "--quick", "--plugin", plugin, "--out", root / "p"]


def _out(root: Path, name: str, content) -> list:
    out = root / "s"
    out.mkdir()
    if content is None:
        (out / name).mkdir()
    else:
        (out / name).write_text(content)
    return ["reproduce", "mnist-sizes", "--quick", "--out", out]


def _mnist(root: Path, truncate: bool) -> list:
    data = root / "data" / "mnist"
    data.mkdir(parents=True)
    if truncate:
        for name in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
                     "t10k-labels-idx1-ubyte.gz"):  # fmt: skip
            (data / name).write_bytes(b"\x1f\x8b\x08\x00" if name.startswith("train-images") else b"")
    return ["train", "mnist-mlp", "--out", root / "o", "--data-dir", root / "data", "--num-train", "200"]


_FINISHED: Path | None = None


def _run(root: Path, name, content, command="resume", read_only=False, unfinished=False) -> list:
    run = root / "run"
    if unfinished:
        trainer = Trainer.start(_tiny_config(epochs=2), run, **_quiet())
        with contextlib.suppress(KeyboardInterrupt):
            trainer.fit(stop_after_steps=3)
        trainer.release()
    else:
        shutil.copytree(_FINISHED, run)
    if name is not None:
        path = run / name
        if path.is_file():
            path.unlink()
        if content is None:
            path.mkdir()
        elif content == "truncate":
            path.write_bytes(load_bytes_truncated(_FINISHED / name))
        elif content == "other":  # the config of another run beside this checkpoint
            saved = json.loads((_FINISHED / name).read_text())
            saved["config"]["seed"] = 7
            path.write_text(json.dumps(saved))
        else:
            path.write_text(content)
    args = [command, run]
    return [*args, "READ_ONLY"] if read_only else args


def load_bytes_truncated(path: Path) -> bytes:
    data = path.read_bytes()
    return data[: len(data) // 2]


@pytest.mark.parametrize("case", sorted(CASES))
def test_every_bad_input_is_one_line(case, isolated, finished_run, capsys, monkeypatch):
    global _FINISHED
    _FINISHED = finished_run
    setup, expected = CASES[case]
    saved_path = list(sys.path)
    monkeypatch.chdir(isolated)
    monkeypatch.delenv("INFODROPOUT_DATA", raising=False)  # only the data directories a case names
    try:
        argv = setup(isolated)
        lock_run = argv[-1] == "READ_ONLY"
        argv = [a for a in argv if a != "READ_ONLY"]
        ro = isolated / "ro"
        ro.mkdir(exist_ok=True)
        argv = [str(a).replace("RO/", f"{ro}/") for a in argv]
        before = _snapshot(isolated)
        if lock_run:
            with read_only(isolated / "run"):
                line = _fails_in_one_line(capsys, argv)
        else:
            with read_only(ro):
                line = _fails_in_one_line(capsys, argv)
    finally:
        sys.path[:] = saved_path
        sys.modules.pop("badmodule", None)
    assert expected in line, line
    assert line.startswith("infodropout")
    after = _snapshot(isolated)
    assert after == before, f"files changed: {sorted(set(after.items()) ^ set(before.items()))[:4]}"


# -- a study's process killed: its local workers stop too -----------------------------------------------


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")  # a zombie has exited
    except FileNotFoundError:
        return True


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads processes from /proc")
def test_a_study_killed_stops_its_workers_and_frees_their_run_directories(isolated):
    """SIGKILL (or SIGTERM) reaches the study's process, not its local workers: each notices its study is
    gone, stops its run as Ctrl-C would, and exits, so that no orphan trains on holding a run directory."""
    out = isolated / "S"
    study = _spawn("compare-priors", "--quick", "--priors", "factorised,correlated", "--betas", "4", "--steps",
                   "100000", "--metrics", "mig", "--no-likelihood", "--jobs", "2", "--threads", "1", "--device",
                   "cpu", "--out", out)  # fmt: skip
    runs = [out / "runs" / f"{prior}-b4-s0" for prior in ("factorised", "correlated")]

    def owners() -> list[int] | None:
        try:
            return [int((run / LOCK_NAME).read_text().split()[0]) for run in runs]
        except (OSError, ValueError, IndexError):
            return None

    try:
        _wait_for(lambda: owners() is not None and study.pid not in owners(), study, "both runs to start", 300)
        workers = owners()
        time.sleep(1.0)
        study.kill()
        study.wait(timeout=30)
        deadline = time.monotonic() + 60
        while not all(_gone(pid) for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert all(_gone(pid) for pid in workers), f"workers {workers} still running a minute after their study"
    finally:
        study.kill()
        for pid in owners() or []:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        study.communicate(timeout=60)  # its pipes, which the workers held too
    for run in runs:  # free again: claimed and released by this process
        claim(run, create=False).release()
