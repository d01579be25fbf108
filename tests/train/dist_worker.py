"""One rank of the data-parallel tests (``tests/train/test_distributed.py`` starts it under torchrun, or as
plain processes): the real command line and ``Trainer``, with a hook on one rank's steps.

    python dist_worker.py resume-interrupt-kill CONFIG.json RUN_A RUN_B RUN_C REPORT_DIR
        resume RUN_A (saved by one process) to its end; train RUN_B, where rank 1 alone gets a Ctrl-C
        after its 7th step; write REPORT_DIR/rank<R>.json (what this rank wrote, how it stopped); then
        train RUN_C, where rank 1 is killed (SIGKILL) in its 3rd step
    python dist_worker.py signal-rank-1 SIGNAL STEPS -- infodropout arguments...
        the command line, with rank 1 sending itself SIGNAL (KILL, STOP) after STEPS steps
"""

import json
import os
import signal
import sys
from pathlib import Path

from infodropout.train import cli, distributed, files, run
from infodropout.train.config import TrainConfig

RANK = int(os.environ.get("RANK", "0"))


def _on_rank_1_after(steps: int, signum: int) -> None:
    """Make every Trainer of this process send ``signum`` to itself after ``steps`` steps, on rank 1 only."""
    fit = run.Trainer.fit

    def fit_with_signal(trainer, *args, **kwargs):
        step, count = trainer._call_step, [0]

        def counted(x, y):
            step(x, y)
            count[0] += 1
            if RANK == 1 and count[0] == steps:
                os.kill(os.getpid(), signum)

        trainer._call_step = counted
        return fit(trainer, *args, **kwargs)

    run.Trainer.fit = fit_with_signal


def _record_writes(written: list) -> None:
    """Note every run file this process writes (all of them go through ``files.atomic_write``, the
    directory through ``create_run_dir``, TensorBoard through ``EpochScalars``)."""
    atomic, create, scalars = files.atomic_write, run.create_run_dir, run.EpochScalars

    def atomic_write(path, write):
        written.append(str(path))
        return atomic(path, write)

    def create_run_dir(path):
        written.append(f"mkdir {path}")
        return create(path)

    def epoch_scalars(run_dir):
        written.append(f"tensorboard {run_dir}")
        return scalars(run_dir)

    files.atomic_write, run.create_run_dir, run.EpochScalars = (
        atomic_write,
        create_run_dir,
        epoch_scalars,
    )


def resume_interrupt_kill(config_path: str, run_a: str, run_b: str, run_c: str, report_dir: str) -> int:
    written: list[str] = []
    _record_writes(written)
    quiet = dict(show_progress=False, log=lambda s: None, dist_timeout=60)  # the first joins the group
    resumed = run.Trainer.from_run_dir(run_a, **quiet)
    resumed.fit()
    _on_rank_1_after(7, signal.SIGINT)
    config = TrainConfig.from_dict(json.loads(Path(config_path).read_text()))
    trainer = run.Trainer.start(config, run_b, **quiet)
    try:
        trainer.fit()
        stopped = None
    except run.Interrupted as stop:
        stopped = str(stop)
    report = {"written": written, "stopped": stopped, "global_step": trainer.global_step, "rank": RANK}
    Path(report_dir, f"rank{RANK}.json").write_text(json.dumps(report))
    _on_rank_1_after(3, signal.SIGKILL)
    run.Trainer.start(config, run_c, **quiet).fit()
    distributed.shutdown()
    return 0


def main(argv: list[str]) -> int:
    task, *rest = argv
    if task == "resume-interrupt-kill":
        return resume_interrupt_kill(*rest)
    if task == "signal-rank-1":
        name, steps, dashes, *command = rest
        assert dashes == "--", argv
        _on_rank_1_after(int(steps), getattr(signal, f"SIG{name}"))
        return cli.main(command)
    raise SystemExit(f"unknown task {task!r}")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
