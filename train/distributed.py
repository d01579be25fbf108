"""One run on several processes (data parallel, launched by torchrun): the environment, the process group,
the reductions a run needs, and teardown.

``torchrun --nproc-per-node=K ...`` starts K copies of a command and tells each where it stands through
``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``. :func:`environment` reads
them (rank 0 of 1 without them, or with ``WORLD_SIZE=1``: one process, exactly as without torchrun);
:func:`connect` joins the process group (NCCL on CUDA, each rank on GPU ``LOCAL_RANK``; gloo on the CPU)
with a timeout that bounds every collective, so a rank blocked on one that died or hangs fails within it.

What a data-parallel run means here (see :class:`~infodropout.train.run.Trainer`):

- ``batch_size`` is the global batch B. Every rank draws the same order of every epoch and takes its
  contiguous block of B / K rows of each global batch; its plate has size N and a subsample of B / K,
  so its loss is the mean per-example loss of its rows and DDP's gradient average is the mean over the
  global batch: the gradient of one process on the same batch.
- Every noisy layer draws its noise for the global batch and keeps its rows (:func:`shard`): each
  rank uses the noise one process would, and all ranks
  keep equal random states, so rank 0's checkpoint serves any number of ranks.
- The accumulators of each rank are reduced where they are read; evaluation splits each test batch
  over the ranks and sums their totals, so every rank gets the same metrics.
- Only rank 0 writes files and prints.
"""

import contextlib
import datetime
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from infodropout.guides.noise import drawing

from .data.loader import row_block

#: The variables torchrun sets for every process it starts.
ENVIRONMENT = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
#: Seconds a rank waits in a collective (or for the others to join) before it gives up.
DEFAULT_TIMEOUT = 600.0
#: What an all-reduce of "no bad step" carries (the smallest real step wins).
_NO_STEP = torch.iinfo(torch.long).max


@contextlib.contextmanager
def shard(start: int | None, total: int | None = None):
    """This process holds rows ``start .. start + B`` of a global batch of ``total`` rows (one rank of a
    data-parallel run): every draw of per-example noise is made for the whole global batch from the
    global generator and this process keeps its own rows (as many as its batch has). Each process then
    uses exactly the noise one process would use on those rows, and every process draws the same amount,
    so their random states stay equal. ``shard(None)`` draws for the local batch alone again."""
    if start is None:
        with drawing(None):
            yield
        return
    if not (isinstance(start, int) and isinstance(total, int) and 0 <= start <= total):
        raise ValueError(f"shard(start={start!r}, total={total!r}): expected integers with 0 <= start <= total")

    def draw(fill, shape: torch.Size, row_dim: int, dtype, device, memory_format) -> torch.Tensor:
        if len(shape) <= row_dim:
            raise ValueError(f"sharded noise of shape {tuple(shape)}: no batch dimension {row_dim} to shard")
        local = shape[row_dim]
        if start + local > total:
            raise ValueError(
                f"sharded noise: rows {start}..{start + local} of a global batch of {total} (shape {tuple(shape)})"
            )
        global_shape = shape[:row_dim] + (total,) + shape[row_dim + 1 :]
        drawn = fill(torch.empty(global_shape, dtype=dtype, device=device, memory_format=memory_format))
        return drawn.narrow(row_dim, start, local)  # a view of the global draw

    with drawing(draw):
        yield


class RankError(RuntimeError):
    """A failure of one rank of a data-parallel run (its message names the rank)."""


@dataclass(frozen=True)
class World:
    """The processes of one run and this one's place among them, with the collectives a run needs.

    For one process (``world_size == 1``) every reduction is the identity and nothing communicates.

    :param rank: this process's rank, 0 .. world_size - 1 (0 writes the files).
    :param world_size: the number of processes K.
    :param local_rank: its rank on this machine (its GPU on CUDA).
    :param device: where its tensors live (None until :func:`connect`).
    :param timeout: seconds a collective may wait.
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device | None = None
    timeout: float = DEFAULT_TIMEOUT

    @property
    def distributed(self) -> bool:
        """Whether there are other processes (K > 1)."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Whether this is rank 0, the one that writes the run directory and prints."""
        return self.rank == 0

    def describe(self) -> str:
        return f"rank {self.rank} of {self.world_size}"

    def check_batch(self, batch_size: int) -> None:
        """A one-line ``ValueError`` unless ``world_size`` divides the global ``batch_size``."""
        if batch_size % self.world_size:
            lower, upper = batch_size // self.world_size * self.world_size, -(-batch_size // self.world_size)
            raise ValueError(
                f"batch_size={batch_size} is not divisible by the world size {self.world_size} (torchrun's "
                f"--nnodes x --nproc-per-node): it is the global batch, split evenly over the ranks; use a multiple "
                f"of {self.world_size} (e.g. {lower or self.world_size} or {upper * self.world_size})"
            )

    def rows(self, num_rows: int) -> tuple[int, int]:
        """``(start, stop)`` of this rank's contiguous block of a global batch of ``num_rows`` rows."""
        return row_block(num_rows, self.rank, self.world_size)

    # -- reductions: every rank calls each at the same point of the run ------------------------------------------

    def sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """The elementwise sum of ``tensor`` over the ranks (a new tensor; ``tensor`` itself for one process)."""
        if not self.distributed:
            return tensor
        total = tensor.clone()
        dist.all_reduce(total, op=dist.ReduceOp.SUM)
        return total

    def first_step(self, step: torch.Tensor) -> torch.Tensor:
        """The smallest of the ranks' step numbers (``-1`` means none; it is the result only if every rank
        has -1); ``step`` itself for one process."""
        if not self.distributed:
            return step
        steps = torch.where(step < 0, torch.full_like(step, _NO_STEP), step)
        dist.all_reduce(steps, op=dist.ReduceOp.MIN)
        return torch.where(steps == _NO_STEP, torch.full_like(steps, -1), steps)

    def any(self, flag: bool) -> bool:
        """Whether ``flag`` is true on some rank (one host sync where there are several)."""
        if not self.distributed:
            return bool(flag)
        value = torch.full((), float(bool(flag)), device=self.device)
        dist.all_reduce(value, op=dist.ReduceOp.MAX)
        return bool(value.item())

    def broadcast_buffers(self, module: nn.Module) -> None:
        """Give every rank rank 0's buffers (batch-norm statistics), in place."""
        if not self.distributed:
            return
        for buffer in module.buffers():
            dist.broadcast(buffer, src=0)

    def data_parallel(self, module: nn.Module, find_unused_parameters: bool = False) -> nn.Module:
        """``module`` wrapped in ``DistributedDataParallel`` (which broadcasts rank 0's parameters and buffers
        now, and averages the gradients over the ranks in every backward pass); ``module`` for one process."""
        if not self.distributed:
            return module
        cuda = self.device is not None and self.device.type == "cuda"
        return DistributedDataParallel(
            module,
            device_ids=[self.device.index] if cuda else None,
            find_unused_parameters=find_unused_parameters,
        )


def _integer(environ: Mapping[str, str], name: str, low: int) -> int:
    text = environ[name]
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"{name}={text!r} in the environment: expected an integer (torchrun sets it)") from None
    if value < low:
        raise ValueError(f"{name}={value} in the environment: expected an integer >= {low}")
    return value


def environment(environ: Mapping[str, str] | None = None) -> World:
    """Where torchrun's environment puts this process (nothing is joined yet): rank 0 of 1 when none of
    ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` is set. A one-line ``ValueError`` for an environment that
    cannot start a run: a variable missing or not an integer, a rank outside the world, or several ranks
    without a rendezvous address (``MASTER_ADDR``, ``MASTER_PORT``)."""
    environ = os.environ if environ is None else environ
    present = [name for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK") if environ.get(name)]
    if not present:
        return World()
    missing = [name for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK") if name not in present]
    if missing:
        raise ValueError(
            f"{', '.join(f'{n}={environ[n]}' for n in present)} in the environment without {', '.join(missing)}: "
            "launch with torchrun, which sets RANK, WORLD_SIZE and LOCAL_RANK for every process"
        )
    world_size = _integer(environ, "WORLD_SIZE", 1)
    rank, local_rank = _integer(environ, "RANK", 0), _integer(environ, "LOCAL_RANK", 0)
    if rank >= world_size:
        raise ValueError(f"RANK={rank} in the environment: expected a rank below WORLD_SIZE={world_size}")
    if world_size == 1:
        return World(local_rank=local_rank)
    unset = [name for name in ("MASTER_ADDR", "MASTER_PORT") if not environ.get(name)]
    if unset:
        raise ValueError(
            f"RANK={rank}, WORLD_SIZE={world_size} in the environment but no rendezvous address ({' and '.join(unset)} "
            "unset): launch with torchrun (--rdzv-endpoint HOST:PORT, or --master-addr and --master-port), or set "
            "MASTER_ADDR and MASTER_PORT"
        )
    port = _integer(environ, "MASTER_PORT", 1)
    if port > 65535:
        raise ValueError(f"MASTER_PORT={port} in the environment: expected a port number 1 .. 65535")
    return World(rank, world_size, local_rank)


def check_timeout(timeout: float) -> float:
    """``timeout`` as a float of seconds, or a one-line ``ValueError`` if it is not a finite positive number."""
    number = isinstance(timeout, (int, float)) and not isinstance(timeout, bool)
    if not (number and math.isfinite(timeout) and timeout > 0):
        raise ValueError(f"dist_timeout={timeout!r}: expected a finite number of seconds > 0")
    return float(timeout)


def connect(device: torch.device, timeout: float = DEFAULT_TIMEOUT, world: World | None = None) -> World:
    """This process's :class:`World` on ``device``, joining the process group where there are several ranks.

    One process (``world`` or :func:`environment` says K = 1): nothing is joined. Several: on CUDA, rank
    ``LOCAL_RANK`` takes GPU ``LOCAL_RANK`` (``torch.cuda.set_device``) and NCCL; on the CPU, gloo. Every
    collective then waits at most ``timeout`` seconds (so does joining, for the other ranks to arrive).
    A process group that is already joined (a second run in the same processes) is reused.
    """
    timeout = check_timeout(timeout)
    world = environment() if world is None else world
    if not world.distributed:
        return World(device=device, timeout=timeout)
    if device.type == "cuda":
        count = torch.cuda.device_count()
        if world.local_rank >= count:
            raise RankError(
                f"{world.describe()}: LOCAL_RANK={world.local_rank} but this machine has {count} CUDA device(s): "
                f"start at most {count} processes per machine (torchrun --nproc-per-node)"
            )
        device = torch.device("cuda", world.local_rank)
        torch.cuda.set_device(device)
    elif device.type != "cpu":
        raise ValueError(f"device={device}: a data-parallel run uses CUDA (NCCL) or the CPU (gloo)")
    if dist.is_initialized():
        if (dist.get_rank(), dist.get_world_size()) != (world.rank, world.world_size):
            raise RankError(
                f"{world.describe()}: the process group already joined here is rank {dist.get_rank()} of "
                f"{dist.get_world_size()}"
            )
    else:
        options = {"device_id": device} if device.type == "cuda" else {}
        dist.init_process_group(
            "nccl" if device.type == "cuda" else "gloo", timeout=datetime.timedelta(seconds=timeout), **options
        )
    return World(world.rank, world.world_size, world.local_rank, device, timeout)


def shutdown() -> None:
    """Leave the process group, if this process joined one."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


_LOST = ("Connection reset", "Connection closed", "Timed out", "timed out", "Broken pipe", "NCCL", "gloo")


def lost_contact(err: BaseException, world: World) -> str | None:
    """The one-line message for ``err`` when it is a collective that failed in a run of several ranks
    (another rank died or stopped answering), naming this rank; None for any other error."""
    if not world.distributed or not isinstance(err, RuntimeError) or isinstance(err, RankError):
        return None
    text = str(err).strip()
    if not (isinstance(err, dist.DistError) or any(s in text for s in _LOST)):
        return None
    first = text.splitlines()[0] if text else type(err).__name__
    first = first.split("] ", 1)[-1][:160]  # without gloo's source location
    return (
        f"{world.describe()}: lost contact with the other ranks ({first}): another rank died or stopped "
        f"answering (a collective waits at most {world.timeout:g} s, --dist-timeout)"
    )
