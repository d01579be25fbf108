"""Per-epoch scalars of a run as TensorBoard event files (``torch.utils.tensorboard``; the optional
``tensorboard`` extra). Without the ``tensorboard`` package nothing is written and nothing fails: the
run's ``metrics.jsonl`` holds the same numbers."""

from collections.abc import Mapping
from pathlib import Path

from .tables import flatten

try:  # the optional ``tensorboard`` extra
    from torch.utils.tensorboard import SummaryWriter
except ImportError:
    SummaryWriter = None
try:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
except ImportError:
    EventAccumulator = None

#: The record fields that are not curves (the x axis, and wall-clock bookkeeping).
SKIPPED = ("epoch", "step")


def available() -> bool:
    """Whether ``torch.utils.tensorboard`` can write event files here."""
    return SummaryWriter is not None


class EpochScalars:
    """Writes each epoch record's numbers as scalars at step ``record["epoch"]`` into ``run_dir``
    (nested fields become tags with ``/``: ``test_kl/z1``). A no-op where TensorBoard is not installed."""

    def __init__(self, run_dir: Path):
        self.run_dir = Path(run_dir)
        self._writer = None
        self.enabled = available()

    def write(self, record: Mapping, step: int | None = None, prefix: str = "") -> None:
        """The record's numbers at ``step`` (default: its epoch), their tags prefixed with ``prefix``."""
        if not self.enabled:
            return
        if self._writer is None:
            self._writer = SummaryWriter(log_dir=str(self.run_dir))
        step = int(record["epoch"]) if step is None else int(step)
        for tag, value in flatten({k: v for k, v in record.items() if k not in SKIPPED}).items():
            self._writer.add_scalar(prefix + tag.replace(".", "/"), value, global_step=step)
        self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def read_scalars(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """The scalars of every event file in ``run_dir``: ``{tag: [(step, value), ...]}`` (for tests and reports)."""
    if EventAccumulator is None:
        raise ValueError("reading TensorBoard event files needs the tensorboard extra (pip install tensorboard)")
    out: dict[str, list[tuple[int, float]]] = {}
    for path in sorted(Path(run_dir).glob("events.out.tfevents.*")):
        acc = EventAccumulator(str(path), size_guidance={"scalars": 0})
        acc.Reload()
        for tag in acc.Tags()["scalars"]:
            out.setdefault(tag, []).extend((e.step, e.value) for e in acc.Scalars(tag))
    return out
