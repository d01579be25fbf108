"""The training step and loop: Pyro's ELBO trained with ``torch.optim``, no host sync inside a step.

A step runs the guide, replays the model, backpropagates ``-ELBO / N`` (the per-example Information
Bottleneck loss) and updates the parameters. Its loss, task loss and KL per site are added to
device-side accumulators that are read once per logging interval; a non-finite loss is recorded on
the device with its step number and stops the run at the next read. On CUDA the whole step can be
captured in a CUDA graph and replayed per batch.

In a data-parallel run (:mod:`~infodropout.train.distributed`) the step calls the ELBO through
``DistributedDataParallel`` and each rank keeps its own accumulators; reading them reduces them over
the ranks (every rank reads at the same points).
"""

import contextlib
import os
import sys
import traceback
from collections.abc import Callable, Iterable

import pyro
import torch
from torch import nn
from torch.optim.swa_utils import update_bn
from tqdm.auto import tqdm

from infodropout.guides.layers import sampling
from infodropout.models import InformationBottleneck

from .distributed import World
from .elbo import ELBOModule


class NonFiniteLoss(RuntimeError):
    """The loss became NaN or infinite."""


def make_optimizer(
    name: str,
    params,
    lr: float,
    momentum: float = 0.9,
    nesterov: bool = True,
    weight_decay: float = 0.0,
    device: torch.device | None = None,
    capturable: bool = False,
) -> torch.optim.Optimizer:
    """SGD (with momentum, Nesterov by default), Adam or AdamW; fused on CUDA.

    ``weight_decay`` is the coefficient of ``weight_decay / 2 * ||theta||^2`` added to the loss (SGD,
    Adam), or decoupled decay (AdamW). With ``capturable`` the learning rate is a device tensor, so a
    CUDA graph can replay the step while a schedule changes it, and Adam keeps its step count on the
    device (``capturable=True``: without it Adam refuses to be captured).
    """
    cuda = device is not None and device.type == "cuda"
    lr_value = torch.tensor(lr, device=device) if capturable else lr
    fast = {"fused": True} if cuda else {}
    adaptive = {"capturable": True, **fast} if capturable else fast
    if name == "sgd":
        return torch.optim.SGD(
            params,
            lr=lr_value,
            momentum=momentum,
            nesterov=nesterov and momentum > 0,
            weight_decay=weight_decay,
            **fast,
        )
    if name == "adam":
        return torch.optim.Adam(params, lr=lr_value, weight_decay=weight_decay, **adaptive)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr_value, weight_decay=weight_decay, **adaptive)
    raise ValueError(f"optimizer={name!r}: expected one of ('sgd', 'adam', 'adamw')")


def autocast(device: torch.device, precision: str):
    """bf16 autocast where ``precision == "bf16"``, on CUDA (without its cast cache, so that it can be
    captured in a CUDA graph) and on the CPU; nothing otherwise.

    Under autocast, convolutions, transposed convolutions, linear layers and matrix products take bf16
    operands and accumulate in fp32; the ops on autocast's fp32 list (on the CPU: the losses, e.g.
    ``binary_cross_entropy_with_logits``, and the linear algebra) run in fp32; every other op computes
    in the dtype of its inputs, promoted to fp32 where a bf16 activation meets an fp32 parameter (a
    prior's). The parameters, their gradients and the optimizer state stay fp32.
    """
    if precision != "bf16":
        return contextlib.nullcontext()
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16, cache_enabled=False)
    return torch.autocast(device.type, dtype=torch.bfloat16)


#: CPU features that do bf16 arithmetic natively: AVX512-BF16 or AMX-BF16 (x86), BF16 in NEON or SVE (Arm).
BF16_FEATURES = ("avx512_bf16", "amx_bf16", "bf16", "sve_bf16")


def cpu_has_bf16() -> bool:
    """Whether this CPU has one of :data:`BF16_FEATURES` (torch's CPU capabilities, else ``/proc/cpuinfo``).
    Without them bf16 convolutions are emulated in fp32 and are no faster than fp32 ones."""
    capabilities = getattr(torch.cpu, "get_capabilities", None)  # not in older torch
    if capabilities is not None:
        found = capabilities()
        return any(bool(found.get(name)) for name in BF16_FEATURES)
    try:
        with open("/proc/cpuinfo") as f:
            words = {w for line in f if line.startswith(("flags", "Features")) for w in line.split(":", 1)[1].split()}
    except OSError:
        return False
    return any(name in words for name in BF16_FEATURES)


def bf16_emulated(device: str) -> bool:
    """Whether bf16 would be emulated on ``device`` (``"cpu"``, ``"cuda"`` or ``"auto"``, as a run resolves it):
    it resolves to the CPU, and the CPU has no bf16 arithmetic (:func:`cpu_has_bf16`)."""
    on_cpu = device == "cpu" or (device == "auto" and not torch.cuda.is_available())
    return on_cpu and not cpu_has_bf16()


class TrainStep:
    """One optimisation step of an :class:`InformationBottleneck` on a batch, with device accumulators.

    :param ib: the model and guide.
    :param optimizer: a ``torch.optim`` optimizer over ``ib.parameters()``.
    :param num_data: N, the training set size (the ELBO is divided by it: a per-example loss).
    :param precision: ``"fp32"`` or ``"bf16"`` (:func:`autocast`, on CUDA and on the CPU).
    :param world: the ranks of a data-parallel run (default: one process); the accumulators are reduced
        over them where they are read.
    :param terms: the module whose ``forward(x, y)`` gives the :class:`~infodropout.train.elbo.ELBOTerms`
        (default: an :class:`~infodropout.train.elbo.ELBOModule` of ``ib``; in a data-parallel run, that
        module wrapped in ``DistributedDataParallel``).
    """

    def __init__(
        self,
        ib: InformationBottleneck,
        optimizer: torch.optim.Optimizer,
        num_data: int,
        device: torch.device,
        precision: str = "fp32",
        world: World | None = None,
        terms: nn.Module | None = None,
    ):
        self.ib, self.optimizer, self.num_data, self.device = ib, optimizer, num_data, device
        self.world = World(device=device) if world is None else world
        self.terms = ELBOModule(ib) if terms is None else terms
        self.elbo = _elbo_of(self.terms)
        self.sites = ib.latent_sites
        self.precision = precision
        self._totals = torch.zeros(3 + len(self.sites), device=device)  # examples, loss, nll, kl per site
        self._bad_step = torch.full((), -1, dtype=torch.long, device=device)
        self._step_index = torch.zeros((), dtype=torch.long, device=device)

    def forward_backward(self, x: torch.Tensor, y: torch.Tensor | None) -> None:
        """``-ELBO / N`` forward and backward, and the accumulators; no optimizer call, no host sync."""
        with autocast(self.device, self.precision):
            terms = self.terms(x, y)
        loss = terms.loss / self.num_data  # mean over this batch (this rank's rows) of the per-example loss
        loss.backward()
        with torch.no_grad():
            batch = x.shape[0]
            parts = [torch.full((), float(batch), device=self.device), loss.detach() * batch, terms.nll.detach()]
            parts += [terms.kl[s].detach() for s in self.sites]
            self._totals += torch.stack([p.float() for p in parts])
            bad = ~torch.isfinite(loss.detach())
            self._bad_step.copy_(torch.where(bad & (self._bad_step < 0), self._step_index, self._bad_step))
            self._step_index += 1

    def __call__(self, x: torch.Tensor, y: torch.Tensor | None) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        self.forward_backward(x, y)
        self.optimizer.step()

    def reset(self) -> None:
        """Zero the accumulators (in place, so a captured graph keeps writing to them)."""
        self._totals.zero_()

    def read(self) -> dict:
        """The accumulated means per example over every rank's examples (one host sync): loss, nll and
        ``kl`` per site."""
        values = self.world.sum(self._totals).tolist()
        examples = max(values[0], 1.0)
        return {
            "examples": int(values[0]),
            "loss": values[1] / examples,
            "nll": values[2] / examples,
            "kl": {s: v / examples for s, v in zip(self.sites, values[3:], strict=True)},
        }

    def first_bad_step(self) -> int | None:
        """The global index of the first step with a non-finite loss on any rank, if any (one host sync)."""
        step = int(self.world.first_step(self._bad_step).item())
        return None if step < 0 else step

    def state_dict(self) -> dict:
        """The accumulators summed over the ranks, and the step count (the same on every rank)."""
        return {"totals": self.world.sum(self._totals).clone(), "step_index": self._step_index.clone()}

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict`: rank 0 takes the totals, the other ranks start theirs from zero (their
        sum is the saved one, whatever the number of ranks that saved it)."""
        if self.world.is_main:
            self._totals.copy_(state["totals"])
        else:
            self._totals.zero_()
        self._step_index.copy_(state["step_index"])


def _elbo_of(terms: nn.Module):
    """The :class:`~infodropout.train.elbo.MeanFieldELBO` inside ``terms`` (under a DDP wrapper or not)."""
    inner = getattr(terms, "module", terms)
    return getattr(inner, "elbo", None)


class GraphCaptureError(RuntimeError):
    """The training step could not be captured in a CUDA graph."""


class GraphedStep:
    """A :class:`TrainStep` captured in a CUDA graph: each call copies the batch into static inputs and
    replays forward, ELBO, backward and optimizer step.

    The first ``warmup`` (>= 1) calls are real steps run eagerly on a side stream; they create the
    optimizer state (a capture must not: its first-step branches would be baked into the graph). The
    last of them runs with host synchronisation forbidden, so a step that cannot be captured is found
    there, eagerly, and :class:`GraphCaptureError` is raised before any capture begins. The next call
    captures, then every call replays. A batch whose shapes or dtypes differ from the captured one (a
    short last batch) runs eagerly, on the same parameters, optimizer state and accumulators.
    """

    def __init__(self, step: TrainStep, warmup: int = 3):
        if warmup < 1:
            raise ValueError(f"warmup={warmup}: expected >= 1 eager steps before the capture")
        self.step, self.warmup = step, warmup
        self.graph = None
        self._calls = 0
        self._stream = torch.cuda.Stream()
        self._signature = None

    @property
    def warming_up(self) -> bool:
        """True while the next call is an eager warm-up step (not the capture)."""
        return self.graph is None and self._calls < self.warmup

    def __call__(self, x, y):
        if self.graph is not None:
            if _signature(x, y) != self._signature:
                self.step(x, y)
                return
            self._x.copy_(x)
            if y is not None:
                self._y.copy_(y)
            self.graph.replay()
        elif self.warming_up:
            self._calls += 1
            self._stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(self._stream), _no_host_sync(self._calls == self.warmup):
                self.step(x, y)
            torch.cuda.current_stream().wait_stream(self._stream)
        else:
            self.capture(x, y)

    def capture(self, x, y) -> None:
        """Capture the step on static copies of ``(x, y)``, then replay it once (a real step on this batch)."""
        self._x, self._y = x.clone(), None if y is None else y.clone()
        self.step.optimizer.zero_grad(set_to_none=True)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            self.step.forward_backward(self._x, self._y)
            self.step.optimizer.step()
        self.graph, self._signature = graph, _signature(x, y)
        graph.replay()


def _signature(x: torch.Tensor, y: torch.Tensor | None) -> tuple:
    return tuple(None if t is None else (t.shape, t.dtype, t.device) for t in (x, y))


@contextlib.contextmanager
def _no_host_sync(enabled: bool):
    """Raise :class:`GraphCaptureError` where the step makes the host wait for the GPU (``.item()``,
    ``nonzero``, a device-to-host copy...): such a step cannot be captured."""
    if not enabled:
        yield
        return
    previous = torch.cuda.get_sync_debug_mode()
    torch.cuda.set_sync_debug_mode("error")
    try:
        yield
    except RuntimeError as err:
        if "synchronizing CUDA operation" not in str(err):
            raise
        raise GraphCaptureError(
            f"the training step synchronises the host with the GPU{_where(err)}, so it cannot be captured "
            "in a CUDA graph"
        ) from err
    finally:
        torch.cuda.set_sync_debug_mode(previous)


def _where(err: BaseException) -> str:
    """`` at FILE:LINE``: the innermost frame of the traceback outside torch (the code that synced)."""
    frames = [f for f in traceback.extract_tb(err.__traceback__) if f"{os.sep}torch{os.sep}" not in f.filename]
    return f" at {frames[-1].filename}:{frames[-1].lineno}" if frames else ""


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0][:200] if text else type(err).__name__


def make_step(step: TrainStep, cuda_graph: bool, log: Callable[[str], None] = print):
    """The step to call per batch: graphed on CUDA when asked, else eager."""
    if not (cuda_graph and step.device.type == "cuda"):
        return step
    return _FallbackStep(step, log)


class _FallbackStep:
    """The graphed step, or the eager one where the step synchronises with the host.

    That is found in the last warm-up step, before any capture: the run says why once and continues
    eagerly. A capture that fails anyway leaves CUDA's state broken for this process (its stream, its
    random number generator, the allocator's capture pool), so it stops the run with a message to
    rerun with ``--no-cuda-graph``; it is not retried in-process.
    """

    def __init__(self, step: TrainStep, log):
        self.step, self.log = step, log
        self.graphed = GraphedStep(step)

    def __call__(self, x, y):
        graphed = self.graphed
        if graphed is None:
            return self.step(x, y)
        if graphed.graph is not None:
            return graphed(x, y)
        capturing = not graphed.warming_up
        try:
            graphed(x, y)
        except GraphCaptureError as err:  # found in the last warm-up step: nothing was captured
            self.log(f"{err}; continuing without a graph")
            self.graphed = None
            self.step(x, y)  # that step stopped part-way: train on this batch eagerly
        except (RuntimeError, NotImplementedError) as err:
            if not capturing or isinstance(err, torch.OutOfMemoryError):
                raise
            reason = _first_line(err.__context__ if err.__context__ is not None else err)
            raise GraphCaptureError(f"CUDA graph capture failed ({reason}): rerun with --no-cuda-graph") from err


@contextlib.contextmanager
def training_context(ib: InformationBottleneck):
    """What a fast step needs: no distribution validation (host syncs), no param-store registration."""
    with pyro.validation_enabled(False), ib.unregistered():
        yield


class _NoiseFree(nn.Module):
    """``head(encoder(x))`` of a bottleneck, as one module (what ``update_bn`` calls)."""

    def __init__(self, ib: InformationBottleneck):
        super().__init__()
        self.ib = ib
        self.training = ib.training  # update_bn restores this mode when it is done

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ib.head(self.ib.encoder(x))


@torch.no_grad()
def recalibrate_batchnorm(ib: InformationBottleneck, batches: Iterable) -> None:
    """Re-estimate batch-norm statistics with the noise off: every batch-norm layer's running mean and
    variance become the averages, over ``batches`` (``(x, y, ...)`` tuples), of the batch mean and
    unbiased batch variance of its input (``torch.optim.swa_utils.update_bn``, with noise forced off).

    Statistics gathered while training see noisy activations; the network is tested without noise,
    so its statistics are re-estimated on clean activations first (the authors' "dry run").
    """
    with sampling(False), pyro.poutine.block():
        update_bn(batches, _NoiseFree(ib))


def batchnorm_state(ib: nn.Module) -> dict:
    """A copy of every batch-norm buffer (to restore after an evaluation-time recalibration)."""
    state = {}
    for prefix, module in ib.named_modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            for name, buf in module.named_buffers(prefix=prefix):
                state[name] = buf.clone()
    return state


def restore_batchnorm(ib: nn.Module, state: dict) -> None:
    buffers = dict(ib.named_buffers())
    for name, value in state.items():
        buffers[name].copy_(value)


def check_finite(
    step: TrainStep, epoch: int, steps_per_epoch: int, kept: str = "keeping the last good checkpoint"
) -> None:
    """Raise :class:`NonFiniteLoss` naming the epoch and step of the first non-finite loss and ``kept``,
    what survives the run (see :meth:`~infodropout.train.run.Trainer.what_is_kept`)."""
    bad = step.first_bad_step()
    if bad is not None:
        raise NonFiniteLoss(
            f"the loss became NaN or infinite at epoch {bad // steps_per_epoch + 1}, step "
            f"{bad % steps_per_epoch + 1} (global step {bad + 1}); the run stops, {kept}"
        )


def progress(iterable, total: int, desc: str, enabled: bool = True):
    """A tqdm progress bar on a terminal; the bare iterable otherwise."""
    if not (enabled and sys.stderr.isatty()):
        return iterable
    return tqdm(iterable, total=total, desc=desc, leave=False, dynamic_ncols=True)
