"""The study runner: a named grid of training configurations -> one run directory each -> results.

A :class:`Study` is a list of :class:`RunSpec` (a :class:`~infodropout.train.config.TrainConfig`, the
run's cell of the grid as ``labels``, and optionally a measurement to take after training). Running it
in ``OUT`` gives::

    OUT/study.json            the grid (name, every run's config and labels): what OUT holds
    OUT/runs/<name>/          one run directory each (config.json, checkpoint.pt, metrics.jsonl, ...)
    OUT/runs/<name>/result.json   written last: the run is finished when it exists
    OUT/results.json, results.md  the results aggregated over seeds (written by the caller's report)

Independent runs go to any ``concurrent.futures.Executor``: by default in this process (``jobs=1``) or
a pool of ``jobs`` local worker processes (spawned, one GPU each on a machine with several). A run that
raises is reported and the others go on; a run whose worker died (the pool broke, or a cluster lost
the worker) is retried once, picking up its checkpoint. A rerun with ``resume=True`` skips finished
runs and resumes interrupted ones from their checkpoints; nothing finished is ever trained again.
"""

import asyncio
import concurrent.futures as cf
import contextlib
import importlib
import json
import multiprocessing
import os
import platform
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm

from infodropout.train.config import TrainConfig
from infodropout.train.errors import NotWritable, one_line, os_reason
from infodropout.train.files import write_json
from infodropout.train.ownership import LOCK_NAME, claim
from infodropout.train.report.tables import flatten
from infodropout.train.run import Trainer
from infodropout.train.threads import plan_threads, torch_threads

FORMAT = "infodropout-study"
RESULT = "result.json"
FAILURE = "failure.txt"  # the traceback of a run's last failed try (removed when it finishes)


def resolve_measure(name: str) -> Callable:
    """A measurement of the experiments by name (:data:`infodropout.train.studies.MEASURES`), or
    ``"package.module:function"`` imported (a user's own): ``fn(trainer, run_dir, options) -> dict``."""
    if ":" in name:
        module, _, attr = name.partition(":")
        try:
            return getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as err:
            raise ValueError(f"measure={name!r}: cannot be imported ({err})") from None
    # deferred: the registry is the experiments', and the experiments import this module
    measures = importlib.import_module("infodropout.train.studies").MEASURES
    if name not in measures:
        raise ValueError(f"measure={name!r}: expected one of {', '.join(sorted(measures))} or 'module:function'")
    return measures[name]


def resolve_curve(name: str) -> Callable:
    """The learning-curve measurement of the measurement ``name`` (:data:`infodropout.train.studies.CURVES`):
    ``fn(trainer, options) -> {name: number}``."""
    curves = importlib.import_module("infodropout.train.studies").CURVES  # deferred: as resolve_measure's
    if name not in curves:
        raise ValueError(f"measure={name!r}: has no learning curve; the measurements with one: {', '.join(curves)}")
    return curves[name]


@dataclass(frozen=True)
class RunSpec:
    """One run of a study.

    :param name: unique within the study; the run directory is ``OUT/runs/<name>``.
    :param config: the training configuration (its ``seed`` is the run's seed).
    :param labels: the run's cell of the grid, JSON values (e.g. ``{"width": 64}``); runs with the
        same labels are seeds of one cell.
    :param measure: a measurement to take after training, by name (see :func:`resolve_measure`), or None.
    :param options: keyword options of the measurement (JSON values).
    """

    name: str
    config: TrainConfig
    labels: Mapping = field(default_factory=dict)
    measure: str | None = None
    options: Mapping = field(default_factory=dict)

    def __post_init__(self):
        if not self.name or "/" in self.name or self.name.startswith("."):
            raise ValueError(f"run name {self.name!r}: expected a non-empty name without '/' or a leading '.'")

    @property
    def seed(self) -> int:
        return self.config.seed

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "config": self.config.to_dict(),
            "labels": dict(self.labels),
            "measure": self.measure,
            "options": dict(self.options),
        }

    @classmethod
    def from_dict(cls, values: Mapping) -> "RunSpec":
        config = TrainConfig.from_dict(values["config"], where=f"run {values['name']}")
        return cls(values["name"], config, values["labels"], values["measure"], values["options"])


@dataclass
class Study:
    """A named grid of runs.

    :param name: the study (an experiment's name).
    :param runs: the runs, names unique.
    :param primary: the value shown on the line of each finished run.
    :param description: what the study shows (the head of its report).
    :param settings: what else defines it (quick mode, schedule ...), recorded in ``study.json``.
    :param grid: the whole grid when ``runs`` is a selection of it (see
        :func:`~.experiment.select`): ``study.json`` records the whole grid, so that studies of
        different selections of one grid share a directory.
    :param selection: the ``--grid`` restriction that made ``runs`` from ``grid``.
    """

    name: str
    runs: list[RunSpec]
    primary: str | None = None
    description: str = ""
    settings: Mapping = field(default_factory=dict)
    grid: list[RunSpec] | None = None
    selection: Mapping = field(default_factory=dict)

    def __post_init__(self):
        names = [r.name for r in self.runs]
        duplicated = sorted({n for n in names if names.count(n) > 1})
        if duplicated:
            raise ValueError(f"study {self.name!r}: run names {duplicated} are used twice")
        if not self.runs:
            raise ValueError(f"study {self.name!r}: the grid is empty")

    def manifest(self) -> dict:
        return {
            "format": FORMAT,
            "study": self.name,
            "settings": dict(self.settings),
            "runs": [r.to_dict() for r in (self.runs if self.grid is None else self.grid)],
        }


class StudyInterrupted(KeyboardInterrupt):
    """The study was interrupted; every finished run is kept and ``--resume`` continues it."""


@dataclass
class StudyResult:
    """What a study run produced: the finished runs' results and the failures (name -> one line)."""

    study: Study
    out: Path
    results: list[dict]
    failures: dict[str, str]
    seconds: float


# -- the output directory ------------------------------------------------------------------------------


def prepare_out(study: Study, out: Path, resume: bool, write: bool = True) -> Path:
    """Claim ``out`` for ``study``: new (absent or empty), or, with ``resume``, holding this very study
    (``write=False``: only check that, writing nothing).

    Anything else is a one-line ``ValueError`` (or ``FileExistsError``) before any training starts:
    nothing in ``out`` is overwritten. The caller owns ``out`` (:func:`run_study` claims it).
    """
    out = Path(out)
    manifest_path = out / "study.json"
    manifest = json.loads(json.dumps(study.manifest()))  # JSON-normalised, as it will be read back
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out}: is a file, not a study directory")
    if out.is_dir() and any(p.name != LOCK_NAME for p in out.iterdir()):
        if not manifest_path.exists():
            raise FileExistsError(f"--out {out}: exists, is not empty and holds no study; choose another --out")
        try:
            held = json.loads(manifest_path.read_text())
        except OSError as err:
            raise ValueError(f"{manifest_path}: cannot be read ({os_reason(err)})") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ValueError(f"{manifest_path}: not a readable study manifest ({one_line(err, 160)})") from None
        if not isinstance(held, dict) or held.get("format") != FORMAT:
            raise ValueError(f"{manifest_path}: not an infodropout study manifest")
        if not isinstance(held.get("settings", {}), dict) or not isinstance(held.get("runs", []), list):
            raise ValueError(f"{manifest_path}: a damaged study manifest (settings: a table, runs: a list expected)")
        if held.get("study") != study.name:
            raise ValueError(
                f"--out {out}: holds the study {held.get('study')!r}, not {study.name!r}; choose another --out"
            )
        held = _current(held, manifest)
        if held != manifest:
            raise ValueError(f"--out {out}: holds {_difference(held, manifest)}; choose another --out")
        if not resume:
            raise FileExistsError(f"--out {out}: holds this study already; add --resume to continue it")
        return out
    if not write:
        return out
    try:
        (out / "runs").mkdir(parents=True, exist_ok=True)
        write_json(manifest_path, manifest)
    except OSError as err:
        raise NotWritable(f"--out {out}: cannot be written ({os_reason(err)})") from None
    return out


def _current(manifest: dict, wanted: dict) -> dict:
    """A manifest's runs read as this version's configs (options added since it was written take their
    defaults, which is what resuming those runs does), and its settings with the ones added since that
    say "the preset's" (None in ``wanted``) read as such, so that the comparison is of what would run."""
    held_settings = manifest.get("settings", {})
    added = {k: None for k, v in wanted.get("settings", {}).items() if v is None and k not in held_settings}
    runs = []
    for run in manifest.get("runs", []):
        try:
            runs.append(json.loads(json.dumps(RunSpec.from_dict(run).to_dict())))
        except (KeyError, TypeError, ValueError, AttributeError):
            runs.append(run)  # unreadable now: compared as written (and so found different)
    return {**manifest, "settings": {**added, **held_settings}, "runs": runs}


def _difference(held: dict, wanted: dict) -> str:
    """One line naming how the study in a directory differs from the one asked for."""
    if held.get("settings") != wanted.get("settings"):
        return f"the study {held['study']!r} with other settings ({held.get('settings')} vs {wanted['settings']})"
    runs_held = {r["name"]: r for r in held.get("runs", [])}
    runs_wanted = {r["name"]: r for r in wanted["runs"]}
    if set(runs_held) != set(runs_wanted):
        extra = sorted(set(runs_wanted) ^ set(runs_held))[:3]
        return f"the study {held['study']!r} over another grid (runs {extra} differ)"
    for name, run in runs_wanted.items():
        if runs_held[name] != run:
            a, b = runs_held[name]["config"], run["config"]
            keys = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k)) or ["labels or measurement"]
            return f"the study {held['study']!r} with run {name!r} configured otherwise ({', '.join(keys)})"
    return f"the study {held['study']!r} configured otherwise"


def run_dir_of(out: Path, spec: RunSpec) -> Path:
    return Path(out) / "runs" / spec.name


def read_result(run_dir: Path) -> dict | None:
    """The result of a finished run, or None (unfinished: no ``result.json``, or one that
    :func:`result_problem` finds damaged, whose run is then measured again)."""
    path = Path(run_dir) / RESULT
    try:
        result = json.loads(path.read_text())
    except (OSError, ValueError):  # absent, unreadable, not JSON, not UTF-8
        return None
    return None if result_problem(result) else result


#: What a run's result.json holds: key -> the type of its value.
RESULT_KEYS = {"name": str, "labels": dict, "seed": int, "final": dict, "measures": dict, "values": dict}


def result_problem(result) -> str | None:
    """What is wrong with the content of a ``result.json`` (None: nothing)."""
    if not isinstance(result, dict):
        return f"a {type(result).__name__}, not a table"
    for key, kind in RESULT_KEYS.items():
        if key not in result:
            return f"no {key!r}"
        if not isinstance(result[key], kind) or isinstance(result[key], bool):
            return f"{key!r} is a {type(result[key]).__name__}, not a {kind.__name__}"
    if any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in result["values"].values()):
        return "'values' holds something other than numbers"
    return None


def _damaged_result(run_dir: Path) -> str | None:
    """One line naming a ``result.json`` that exists but cannot be used, or None."""
    path = Path(run_dir) / RESULT
    if not path.exists():
        return None
    try:
        problem = result_problem(json.loads(path.read_text()))
    except OSError as err:
        problem = f"cannot be read ({os_reason(err)})"
    except ValueError as err:
        problem = f"not JSON ({one_line(err, 120)})"
    return None if problem is None else f"{path}: damaged ({problem})"


# -- one run, in whichever process executes it ---------------------------------------------------------


def execute_run(payload: Mapping) -> dict:
    """Train (or resume) one run and take its measurement; write and return its ``result.json``.

    The payload is plain data (so it travels to any worker): ``spec`` (:meth:`RunSpec.to_dict`),
    ``run_dir``, ``threads`` (torch threads for this run; None leaves them). Epoch lines go to
    ``run_dir/train.log``.
    """
    spec = RunSpec.from_dict(payload["spec"])
    run_dir = Path(payload["run_dir"])
    finished = read_result(run_dir)
    if finished is not None:
        return finished
    _RUNNING.set()
    try:
        with torch_threads(int(payload["threads"]) if payload.get("threads") else None):
            return _train_and_measure(spec, run_dir)
    finally:
        _RUNNING.clear()


def _train_and_measure(spec: RunSpec, run_dir: Path) -> dict:
    start = time.perf_counter()
    log = _RunLog(run_dir)
    if (run_dir / "checkpoint.pt").is_file():
        trainer = Trainer.from_run_dir(run_dir, log=log, show_progress=False)
        if trainer.config.to_dict() != spec.config.to_dict():
            trainer.release()
            raise ValueError(f"{run_dir}: holds a run of another configuration than the study's")
        log(f"resuming at epoch {trainer.epoch + 1} of {trainer.config.epochs}")
    else:
        trainer = Trainer.start(spec.config, run_dir, log=log, show_progress=False)
    try:  # the run directory is this process's until the result is written
        every = spec.options.get("curve_every") if spec.measure else None
        if every:  # the learning curve: the measurement's cheap twin every `every` steps
            curve = resolve_curve(spec.measure)
            trainer.measure_every(int(every), lambda t: curve(t, dict(spec.options)))
        final = trainer.fit() if trainer.epoch < trainer.config.epochs else trainer.finish()
        measured = {}
        if spec.measure:
            measured = resolve_measure(spec.measure)(trainer, run_dir, dict(spec.options)) or {}
        result = {
            "name": spec.name,
            "labels": dict(spec.labels),
            "seed": spec.seed,
            "final": final,
            "measures": measured,
            "values": run_values(final, measured),
            "seconds": time.perf_counter() - start,
            "device": str(trainer.device),
            "threads": torch.get_num_threads(),
        }
        try:
            write_json(run_dir / RESULT, result)
            (run_dir / FAILURE).unlink(missing_ok=True)  # an earlier try's report, stale now
        except OSError as err:
            raise NotWritable(f"{run_dir / RESULT}: cannot be written ({os_reason(err)})") from None
    finally:
        trainer.release()
    return result


def run_values(final: Mapping, measured: Mapping) -> dict[str, float]:
    """The numbers of a run's final metrics and measurements, flattened (``test_kl.z1``), with the total
    information over layers, ``kl_total`` (and ``kl_total<suffix>`` for every ``kl_per_layer<suffix>``)."""
    values = flatten({**final, **measured})
    for key, per_layer in final.items():
        if key.startswith("kl_per_layer") and isinstance(per_layer, Mapping) and per_layer:
            values["kl_total" + key[len("kl_per_layer") :]] = float(sum(per_layer.values()))
    return values


class _RunLog:
    """Epoch lines of a run, appended to ``run_dir/train.log`` once the run directory exists."""

    def __init__(self, run_dir: Path):
        self.run_dir, self.pending = run_dir, []

    def __call__(self, line: str) -> None:
        self.pending.append(line.rstrip("\n"))
        if self.run_dir.is_dir():
            try:
                with open(self.run_dir / "train.log", "a") as f:
                    f.write("\n".join(self.pending) + "\n")
            except OSError:
                return  # kept for the next line; the run's own files say what could not be written
            self.pending.clear()


# -- executors -----------------------------------------------------------------------------------------


#: Set while this process trains or measures a run (:func:`execute_run`).
_RUNNING = threading.Event()
#: Seconds a local worker whose study process is gone gives its run to stop and keep its checkpoint.
ORPHAN_GRACE = 120.0


def _init_worker(devices: Sequence[int], counter) -> None:
    """In a local worker process: its own GPU where there are several, and a watch on the study's process.
    (It inherits ``OMP_WAIT_POLICY`` from this process's environment, set when :mod:`infodropout.train` was
    imported: see there.)"""
    if devices:
        with counter.get_lock():
            index = counter.value
            counter.value += 1
        torch.cuda.set_device(devices[index % len(devices)])
    threading.Thread(target=_follow_parent, args=(os.getppid(),), name="follow-study", daemon=True).start()


def _follow_parent(parent: int, poll: float = 0.5) -> None:
    """In a local worker: once the study's process ``parent`` is gone (a SIGTERM or SIGKILL, which its workers
    do not receive), stop as Ctrl-C stops a run (at the next step, its checkpoint kept for ``--resume``; a
    measurement is abandoned) and exit, rather than train on for a study that nobody collects, holding the
    run's directory. The worker exits at the latest :data:`ORPHAN_GRACE` seconds after the interruption."""
    while os.getppid() == parent:
        time.sleep(poll)
    if _RUNNING.is_set():
        os.kill(os.getpid(), signal.SIGINT)
        deadline = time.monotonic() + ORPHAN_GRACE
        while _RUNNING.is_set() and time.monotonic() < deadline:
            time.sleep(poll)
    os._exit(130)  # the status of an interruption; nothing is waiting for this process's result


def local_executor(jobs: int, device: str = "auto") -> cf.Executor:
    """A pool of ``jobs`` spawned worker processes; with CUDA devices, each worker takes one in turn."""
    context = multiprocessing.get_context("spawn")
    devices = list(range(torch.cuda.device_count())) if device != "cpu" and torch.cuda.is_available() else []
    counter = context.Value("i", 0)
    return cf.ProcessPoolExecutor(jobs, mp_context=context, initializer=_init_worker, initargs=(devices, counter))


#: Where the address of a Dask scheduler is read from when ``--scheduler`` is not given.
SCHEDULER_ENV = "DASK_SCHEDULER_ADDRESS"


def scheduler_address(option: str | None) -> str | None:
    """``--scheduler`` if given, else ``$DASK_SCHEDULER_ADDRESS``, else None (local processes)."""
    return option or os.environ.get(SCHEDULER_ENV) or None


@contextlib.contextmanager
def dask_executor(address: str, timeout: float = 10.0):
    """A ``concurrent.futures`` executor over the Dask cluster whose scheduler is at ``address``
    (``tcp://HOST:8786``): each run is a task (``pure=False``) on some worker; the run directories must
    be on storage the workers and this process share. The client is closed on exit, the cluster left as
    it was. An unreachable scheduler, or Dask not installed, is a one-line ``ValueError`` at once.

    Dask itself reschedules a task whose worker died (up to the scheduler's ``allowed-failures``) before
    reporting ``KilledWorker``; the runner then retries the run once more, from its checkpoint.
    """
    try:
        from distributed import Client  # deferred: the optional cluster extra, imported only where it is used
    except ImportError:
        raise ValueError(
            f"--scheduler {address}: needs Dask's distributed (pip install 'information-dropout[cluster]')"
        ) from None
    check_scheduler(address, timeout)  # bounded: Client's own handshake can wait forever on a stranger
    try:
        client = Client(address, timeout=timeout, set_as_default=False)  # leave dask's global scheduler alone
    except (OSError, TimeoutError, ValueError) as err:
        raise ValueError(f"--scheduler {address}: cannot reach a Dask scheduler ({_one_line(err)})") from None
    try:
        yield client.get_executor(pure=False)
    finally:
        client.close()


def check_scheduler(address: str, timeout: float = 10.0) -> None:
    """A one-line ``ValueError`` unless a Dask scheduler answers at ``address`` within ``timeout`` seconds.

    Connects with Dask's own comm (its handshake) and asks the scheduler for its identity, all under one
    deadline, in a thread of its own with its own event loop: an address that does not parse, nothing
    listening, a server that accepts and says nothing, or one that answers in another protocol (HTTP: its
    first bytes read as a frame length of exabytes) all end within ``timeout`` as the same one line. No
    ``Client`` is made for an address that fails, so nothing is left to close at exit.
    """

    async def probe():
        from distributed.comm import connect  # deferred: the optional cluster extra (its absence is said above)

        comm = await connect(address, timeout=timeout)
        try:
            await comm.write({"op": "identity", "reply": True})
            reply = await comm.read()
        finally:
            comm.abort()
        if not (isinstance(reply, dict) and reply.get("type") == "Scheduler"):
            raise ValueError(f"it answered as {_describe(reply)}, not as a scheduler")

    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            asyncio.run(asyncio.wait_for(probe(), timeout))
            outcome.append(None)
        except BaseException as err:  # noqa: BLE001  (reported below as one line)
            outcome.append(err)

    thread = threading.Thread(target=run, name="infodropout-scheduler-check", daemon=True)
    thread.start()
    thread.join(timeout + 5)  # asyncio's own deadline ends it; a blocked resolver is bounded here
    error = outcome[0] if outcome else TimeoutError(f"no answer in {timeout:g} s")
    if error is None:
        return
    if isinstance(error, (TimeoutError, asyncio.TimeoutError)):
        error = TimeoutError(f"no answer in {timeout:g} s")
    elif isinstance(error, (MemoryError, OverflowError)):  # a frame length read from another protocol's bytes
        error = ValueError("it answered, but not in Dask's protocol")
    raise ValueError(f"--scheduler {address}: cannot reach a Dask scheduler there ({_one_line(error)})") from None


def _describe(reply) -> str:
    kind = reply.get("type") if isinstance(reply, dict) else None
    return repr(kind) if kind else f"a {type(reply).__name__}"


class _InProcess(cf.Executor):
    """Runs each submitted call at once, in this process (``jobs=1``): exceptions land in the future."""

    def submit(self, fn, /, *args, **kwargs):
        future = cf.Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as err:  # noqa: BLE001  (reported per run)
            future.set_exception(err)
        return future


#: Exceptions (by class name) that mean the worker died, not the run: such a run is retried once.
WORKER_LOST = ("BrokenProcessPool", "KilledWorker", "CommClosedError", "FutureCancelledError", "CancelledError")


def _worker_lost(err: BaseException) -> bool:
    return type(err).__name__ in WORKER_LOST


def _one_line(err: BaseException) -> str:
    text = one_line(err, 300)
    return f"{type(err).__name__}: {text}"[:300] if str(err).strip() else type(err).__name__


# -- the study ------------------------------------------------------------------------------------------


def run_study(
    study: Study,
    out: Path,
    *,
    jobs: int = 1,
    resume: bool = False,
    executor: cf.Executor | Callable[[], cf.Executor] | None = None,
    threads: int | None = None,
    device: str = "auto",
    log: Callable[[str], None] = print,
    show_progress: bool = True,
) -> StudyResult:
    """Run every unfinished run of ``study`` in ``out``; return the finished runs' results.

    :param jobs: runs at once: 1 runs them in this process, more use a pool of local processes.
    :param resume: continue the study already in ``out`` (finished runs are skipped).
    :param executor: a ``concurrent.futures.Executor`` (or a function making one) to use instead of
        the local pool, e.g. a Dask client's executor; it is not shut down here unless made here.
    :param threads: torch threads per run (default: for local runs, the CPU cores shared among ``jobs``, fewer
        where the machine is busy, :func:`~infodropout.train.threads.plan_threads`, whose note goes to ``log``;
        with an ``executor``, the workers' own).
    :param log: where the line of each finished run goes (``[k/n] name  metric  seconds``).
    """
    if not (isinstance(jobs, int) and 1 <= jobs <= MAX_JOBS):
        raise ValueError(f"jobs={jobs!r}: expected an integer in [1, {MAX_JOBS}] (local worker processes)")
    prepare_out(study, out, resume, write=False)  # refuse what is not this study before claiming (touching) it
    with claim(out, "study directory"):  # held while any run of it may be trained, here or by a worker
        return _run_owned(study, Path(out), jobs, resume, executor, threads, device, log, show_progress)


#: The most local worker processes a study starts (each imports torch: hundreds of MB apiece).
MAX_JOBS = 1024


def _run_owned(study, out, jobs, resume, executor, threads, device, log, show_progress) -> StudyResult:
    out = prepare_out(study, out, resume)
    start = time.perf_counter()
    specs = {s.name: s for s in study.runs}
    results: dict[str, dict] = {}
    for name, spec in specs.items():
        done = read_result(run_dir_of(out, spec))
        if done is not None:
            results[name] = done
        else:
            damaged = _damaged_result(run_dir_of(out, spec))
            if damaged:
                log(f"{damaged}: the run is measured again (from its checkpoint where it has one)")
    todo = [s for s in study.runs if s.name not in results]
    if results:
        log(f"{study.name}: {len(results)} of {len(specs)} runs already finished, {len(todo)} to go")
    if threads is None and executor is None:
        plan = plan_threads(jobs)
        threads = plan.threads
        if plan.note:
            log(f"{study.name}: {plan.note}")
    failures: dict[str, str] = {}
    bar = _progress(len(specs), len(results), study.name, show_progress)
    try:
        _dispatch(study, out, todo, jobs, executor, threads, device, results, failures, log, bar, len(specs))
    except KeyboardInterrupt:
        raise StudyInterrupted(
            f"{study.name} interrupted with {len(results)} of {len(specs)} runs finished (each kept)"
        ) from None
    finally:
        bar.close()
    ordered = [results[s.name] for s in study.runs if s.name in results]
    return StudyResult(study, out, ordered, failures, time.perf_counter() - start)


def _dispatch(study, out, todo, jobs, executor, threads, device, results, failures, log, bar, total) -> None:
    """Submit every run, collect each as it finishes; a run whose worker was lost is submitted again once
    (to a new pool where the pool itself broke)."""
    if executor is None:
        make = (lambda: local_executor(jobs, device)) if jobs > 1 else _InProcess
    elif callable(executor) and not isinstance(executor, cf.Executor):
        make = executor
    else:
        make = None
    tries = {s.name: 0 for s in todo}

    def payload(spec):
        tries[spec.name] += 1
        return {"spec": spec.to_dict(), "run_dir": str(run_dir_of(out, spec)), "threads": threads}

    def collect(spec, future, retry) -> None:
        try:
            result = future.result()
        except KeyboardInterrupt:
            raise
        except BaseException as err:  # noqa: BLE001  (one run's failure is reported, the others go on)
            if _worker_lost(err) and tries[spec.name] < 2:
                log(f"{spec.name}: its worker was lost ({_one_line(err)}); retrying it once")
                retry.append(spec)
                return
            failures[spec.name] = _one_line(err)
            _write_failure(out, spec, err)
            log(f"{spec.name}: FAILED ({failures[spec.name]})")
            bar.update(1)
            return
        results[spec.name] = result
        bar.update(1)
        log(_finished_line(study, result, len(results) + len(failures), total))

    pending = list(todo)
    while pending:
        current = executor if make is None else make()
        retry: list[RunSpec] = []
        try:
            if isinstance(current, _InProcess):  # one at a time, each reported as it finishes
                for spec in pending:
                    collect(spec, current.submit(execute_run, payload(spec)), retry)
            else:
                futures = {current.submit(execute_run, payload(spec)): spec for spec in pending}
                for future in cf.as_completed(futures):
                    collect(futures[future], future, retry)
        finally:
            if make is not None:
                current.shutdown(wait=True, cancel_futures=True)
        pending = retry


def _write_failure(out: Path, spec: RunSpec, err: BaseException) -> None:
    run_dir = run_dir_of(out, spec)
    text = "".join(traceback.format_exception(type(err), err, err.__traceback__))
    with contextlib.suppress(OSError):  # the failure is reported in any case; this is its traceback
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / FAILURE).write_text(text)


def _finished_line(study: Study, result: dict, k: int, total: int) -> str:
    parts = [f"[{k}/{total}] {result['name']}"]
    key = study.primary
    if key and key in result["values"]:
        parts.append(f"{key} {result['values'][key]:.4g}")
    parts.append(f"{result['seconds']:.1f}s")
    return "  ".join(parts)


class _NoBar:
    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


def _progress(total: int, done: int, desc: str, enabled: bool):
    """A tqdm bar over the grid on a terminal (runs, not epochs); nothing otherwise."""
    if not (enabled and sys.stderr.isatty()):
        return _NoBar()
    return tqdm(total=total, initial=done, desc=desc, unit="run", dynamic_ncols=True)


def machine() -> dict:
    """Where a study ran: platform, CPU count, torch and its device."""
    info = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "torch": torch.__version__,
    }
    if torch.cuda.is_available():
        info["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return info


def describe_machine(info: Mapping) -> str:
    """:func:`machine`'s record in words: ``"<platform>, <n> CPUs, torch <version>[, <GPU> ...]"``."""
    return f"{info['platform']}, {info['cpus']} CPUs, torch {info['torch']}" + "".join(
        f", {g}" for g in info.get("gpus", [])
    )


def finished_runs(out: Path, specs: Iterable[RunSpec]) -> list[dict]:
    """The results of the finished runs among ``specs`` in ``out`` (in order)."""
    found = (read_result(run_dir_of(out, s)) for s in specs)
    return [r for r in found if r is not None]
