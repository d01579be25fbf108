"""Speed of the project's training step against a hand-written PyTorch step of the same model and
parameters, and against stock ``pyro.infer.SVI.step``, measured in one process (ratios, not absolute
times, are what carry over between runs on a shared machine).

The dSprites VAE of the priors study (``dsprites-vae``) is timed with each prior against a hand-written
step of the same network and negative ELBO and, on the CPU, over the options of its step: fp32 against
bf16 autocast, contiguous against channels-last, 1 against 2 threads, each with the GFLOP/s its
convolutions and linear layers reach (forward and backward FLOPs counted by
``torch.utils.flop_counter.FlopCounterMode``) next to what a large fp32 GEMM reaches on one core, the
practical peak, measured here too.
"""

import argparse
import copy
import json
import math
import platform
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pyro
import torch
from torch.distributions.utils import vec_to_tril_matrix
from torch.nn import functional as F
from torch.utils.flop_counter import FlopCounterMode

from infodropout.guides.layers import GaussianLatent, InformationDropout
from infodropout.guides.noise import LOG_BASE_FLOOR
from infodropout.models import InformationBottleneck
from infodropout.models.priors import CorrelatedLogNormalPrior, LogNormalPrior
from infodropout.models.zoo import build_network

from .engine import GraphedStep, TrainStep, autocast, cpu_has_bf16, make_optimizer, training_context
from .errors import NotWritable, os_reason
from .files import write_json
from .run import package_versions, resolve_device
from .threads import available_cores, plan_threads, torch_threads, wait_policy

#: name -> (architecture, input shape, batch size, extra build options)
MODELS = {
    "mlp": ("mlp", (1, 28, 28), 128, {"hidden": (1024, 1024, 1024)}),
    "allcnn32": ("allcnn32", (3, 32, 32), 128, {}),
}
NUM_DATA = 50_000
BETA = 3 / NUM_DATA
LR = 0.01

#: The dSprites VAE's priors, each with the latent it serves (the priors study's default grid).
VAE_PRIORS = {
    "factorised": "information",
    "correlated": "information",
    "correlated-low-rank": "information",
    "normal": "gaussian",
}
VAE = "dsprites-vae"
VAE_SHAPE = (1, 64, 64)
VAE_BATCH = 64  # the preset's
VAE_LR = 5e-4  # the preset's (Adam)
#: What ``models`` picks from: the classifiers above and the dSprites VAE.
PARTS = (*MODELS, VAE)
#: The side of the square fp32 GEMM whose speed on one core is the practical peak.
GEMM_SIZE = 2048


def build_bench_model(name: str, device: torch.device, dropout: str = "information") -> InformationBottleneck:
    arch, shape, _, options = MODELS[name]
    return build_network(arch, shape, 10, dropout=dropout, beta=BETA, num_data=NUM_DATA, **options).to(device)


def _information_dropout(layer: InformationDropout, h: torch.Tensor):
    """One information-dropout layer by hand: the noisy output and its KL summed over the batch."""
    f = F.relu(layer.f_head(h))
    alpha = layer.alpha_min + layer.alpha_max * torch.sigmoid(layer.alpha_head(h))
    z = f * torch.exp(alpha * torch.randn_like(f))
    kl = torch.where(f > 0, math.log(layer.max_alpha) - torch.log(alpha), torch.zeros_like(alpha))
    return z, kl.sum()


def handwritten_loss(name: str, ib: InformationBottleneck, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The per-example Information Bottleneck loss written in plain PyTorch on ``ib``'s modules:
    ``mean cross-entropy + beta * (sum of KLs) / B`` (ReLU units, log-uniform prior); for ``dsprites-vae``
    :func:`vae_handwritten_loss`."""
    enc = ib.encoder
    if name == VAE:
        return vae_handwritten_loss(ib, x)
    if name == "mlp":
        h, kl = x.flatten(1), 0.0
        for layer in enc.layers:
            h, k = _information_dropout(layer, h)
            kl = kl + k
    elif name == "allcnn32":
        h = F.dropout(x, enc.input_dropout, training=True)
        h, k1 = _information_dropout(enc.drop1, enc.block1(h))
        h, k2 = _information_dropout(enc.drop2, enc.block2(h))
        kl = k1 + k2
    else:
        raise ValueError(f"model={name!r}: expected one of {tuple(MODELS)}")
    logits = ib.head(h)
    return F.cross_entropy(logits, y, reduction="sum") / x.shape[0] + ib.beta * kl / x.shape[0]


def vae_handwritten_loss(ib: InformationBottleneck, x: torch.Tensor) -> torch.Tensor:
    """The dSprites VAE's per-example negative ELBO written in plain PyTorch on ``ib``'s modules::

        ( sum over pixels BCE(decoder(z), x) + beta * KL(q(z | x) || p(z)) ) / B

    with ``z`` drawn by hand and the KL in closed form for the prior ``ib`` was built with. Information
    latent, ``z = f * exp(alpha * eps)``, ``m = log max(f, 1e-4)``, ``s = alpha``: against the factorised
    log-normal ``log z ~ N(mu, sigma^2)`` per unit, ``KL = log(sigma / s) + (s^2 + (m - mu)^2) / (2 sigma^2) - 1/2``;
    against a correlated ``log z ~ N(mu, Sigma)`` (``Sigma = L L^T``, or ``W W^T + diag(d)`` factored by
    Cholesky), ``KL = 1/2 (sum_j P_jj s_j^2 + |L^-1 (m - mu)|^2 - D) + sum log diag L - sum log s`` with
    ``P = Sigma^-1``. Gaussian latent ``z = loc + scale * eps`` against ``N(0, 1)``:
    ``KL = sum 1/2 (scale^2 + loc^2 - 1) - log scale``.
    """
    layer, prior = ib.encoder.latent, ib.model.priors[0]
    h = ib.encoder.features(x)  # (B, 256)
    if isinstance(layer, GaussianLatent):
        loc, scale = layer.f_head(h), torch.exp(layer.scale_head(h))  # (B, D)
        z = loc + scale * torch.randn_like(loc)
        kl = (0.5 * (scale.square() + loc.square() - 1) - torch.log(scale)).sum()
    elif isinstance(layer, InformationDropout):
        f = F.softplus(layer.f_head(h))  # (B, D)
        alpha = layer.alpha_min + layer.alpha_max * torch.sigmoid(layer.alpha_head(h))
        z = f * torch.exp(alpha * torch.randn_like(f))
        m = torch.log(f.clamp_min(LOG_BASE_FLOOR))
        if isinstance(prior, LogNormalPrior):
            sigma = prior.log_scale.exp()
            kl = torch.log(sigma / alpha) + (alpha.square() + (m - prior.loc).square()) / (2 * sigma.square()) - 0.5
            kl = kl.sum()
        elif isinstance(prior, CorrelatedLogNormalPrior):
            if prior.rank is None:
                raw = vec_to_tril_matrix(prior.unconstrained_tril)
                L = raw.tril(-1) + torch.diag(raw.diagonal().exp())
            else:
                cov = prior.cov_factor @ prior.cov_factor.T + torch.diag(prior.log_diag.exp())
                L = torch.linalg.cholesky(cov)
            eye = torch.eye(prior.dim, dtype=L.dtype, device=L.device)
            L_inv = torch.linalg.solve_triangular(L, eye, upper=False)  # (D, D)
            white = (m - prior.loc) @ L_inv.T  # (B, D): L^-1 (m - mu) per row
            precision_diag = L_inv.square().sum(0)  # P_jj = sum_k (L^-1)_kj^2
            kl = 0.5 * ((precision_diag * alpha.square()).sum() + white.square().sum() - m.numel())
            kl = kl + m.shape[0] * torch.log(L.diagonal()).sum() - torch.log(alpha).sum()
        else:
            raise ValueError(f"prior {type(prior).__name__}: the hand-written VAE step knows {tuple(VAE_PRIORS)}")
    else:
        raise ValueError(f"latent {type(layer).__name__}: the hand-written VAE step knows information and Gaussian")
    logits = ib.head(z)  # (B, 1, 64, 64)
    nll = F.binary_cross_entropy_with_logits(logits, x, reduction="sum")
    return (nll + ib.beta * kl) / x.shape[0]


class HandwrittenStep:
    """A plain PyTorch training step of :func:`handwritten_loss` (the reference for speed)."""

    def __init__(self, name, ib, optimizer, precision="fp32"):
        self.name, self.ib, self.optimizer, self.precision = name, ib, optimizer, precision

    def forward_backward(self, x, y):
        with autocast(x.device, self.precision):
            loss = handwritten_loss(self.name, self.ib, x, y)
        loss.backward()

    def __call__(self, x, y):
        self.optimizer.zero_grad(set_to_none=True)
        self.forward_backward(x, y)
        self.optimizer.step()


class BinaryDropoutStep(HandwrittenStep):
    """Plain PyTorch binary dropout on the same architecture (the throughput reference on a GPU)."""

    def forward_backward(self, x, y):
        with autocast(x.device, self.precision):
            loss = F.cross_entropy(self.ib.head(self.ib.encoder(x)), y)
        loss.backward()


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def _time_round_robin(variants: dict[str, Callable[[], None]], device, warmup: int, repeats: int) -> dict:
    """Median milliseconds per call of each variant. Calls are interleaved so drift hits all alike,
    and the order rotates every round so no variant always runs after the same other one (what ran
    just before, e.g. its allocations, changes a step's time)."""
    for fn in variants.values():
        for _ in range(warmup):
            fn()
    _sync(device)
    times = {k: [] for k in variants}
    keys = list(variants)
    for r in range(repeats):
        for key in keys[r % len(keys) :] + keys[: r % len(keys)]:
            fn = variants[key]
            _sync(device)
            start = time.perf_counter()
            fn()
            _sync(device)
            times[key].append(1000 * (time.perf_counter() - start))
    return {k: statistics.median(v) for k, v in times.items()}


def bench_model(name: str, device: torch.device, repeats: int, warmup: int = 3) -> dict:
    """Time project (eager, and graphed on CUDA), hand-written and stock SVI steps of model ``name``."""
    _, shape, batch, _ = MODELS[name]
    pyro.set_rng_seed(0)
    ib = build_bench_model(name, device)
    x = torch.randn(batch, *shape, device=device)
    y = torch.randint(0, 10, (batch,), device=device)

    def optimizer():
        return make_optimizer("sgd", ib.parameters(), LR, device=device)

    project = TrainStep(ib, optimizer(), NUM_DATA, device)
    hand = HandwrittenStep(name, ib, optimizer())
    pyro.clear_param_store()
    # stock SVI minimises the whole -ELBO (N times the per-example loss): the same update needs lr / N
    stock_optim = pyro.optim.SGD({"lr": LR / NUM_DATA, "momentum": 0.9, "nesterov": True})
    svi = pyro.infer.SVI(ib.model, ib.guide, stock_optim, pyro.infer.TraceMeanField_ELBO())

    def run_project():
        with training_context(ib):
            project(x, y)

    variants = {"project": run_project, "handwritten": lambda: hand(x, y), "stock_svi": lambda: svi.step(x, y)}
    if device.type == "cuda":
        graphed_project = GraphedStep(TrainStep(ib, optimizer(), NUM_DATA, device, "fp32"))
        graphed_hand = GraphedStep(HandwrittenStep(name, ib, optimizer()))

        def run_graphed_project():
            if graphed_project.graph is not None:  # a replay runs no Python model code
                return graphed_project(x, y)
            with training_context(ib):
                graphed_project(x, y)

        variants["project_graph"] = run_graphed_project
        variants["handwritten_graph"] = lambda: graphed_hand(x, y)
        warmup = max(warmup, graphed_project.warmup + 2)  # capture before the timed rounds
    ms = _time_round_robin(variants, device, warmup, repeats)
    out = {"batch_size": batch, "input_shape": list(shape), "median_ms": ms}
    out["ratio_vs_handwritten"] = ms["project"] / ms["handwritten"]
    out["speedup_vs_stock_svi"] = ms["stock_svi"] / ms["project"]
    if "project_graph" in ms:
        out["graph_ratio_vs_handwritten_graph"] = ms["project_graph"] / ms["handwritten_graph"]
        out["graph_speedup_vs_stock_svi"] = ms["stock_svi"] / ms["project_graph"]
    return out


def bench_throughput(device: torch.device, batch: int = 512, repeats: int = 20) -> dict:
    """All-CNN-32 images per second at a large batch, bf16, channels-last, graphed (CUDA only):
    the project's information-dropout step against plain PyTorch binary dropout."""
    pyro.set_rng_seed(0)
    info = build_bench_model("allcnn32", device).to(memory_format=torch.channels_last)
    binary = build_bench_model("allcnn32", device, dropout="binary").to(memory_format=torch.channels_last)
    x = torch.randn(batch, 3, 32, 32, device=device).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch,), device=device)
    project = GraphedStep(
        TrainStep(info, make_optimizer("sgd", info.parameters(), LR, device=device), NUM_DATA, device, "bf16")
    )
    reference = GraphedStep(
        BinaryDropoutStep("allcnn32", binary, make_optimizer("sgd", binary.parameters(), LR, device=device), "bf16")
    )

    def run_project():
        if project.graph is not None:
            return project(x, y)
        with training_context(info):
            project(x, y)

    ms = _time_round_robin(
        {"project_information": run_project, "binary_dropout": lambda: reference(x, y)}, device, 5, repeats
    )
    return {
        "batch_size": batch,
        "images_per_second": {k: 1000 * batch / v for k, v in ms.items()},
        "median_ms": ms,
    }


def build_vae(prior: str, device: torch.device, num_data: int = NUM_DATA) -> InformationBottleneck:
    """The priors study's dSprites VAE (``dsprites-vae``: beta-VAE's convolutional encoder and decoder, z = 10,
    Bernoulli pixels) with ``prior`` on the latent it serves (:data:`VAE_PRIORS`), beta = 1."""
    if prior not in VAE_PRIORS:
        raise ValueError(f"priors: {prior!r}: expected names from {', '.join(VAE_PRIORS)}")
    ib = build_network(
        "conv-vae", VAE_SHAPE, 1, prior=prior, latent=VAE_PRIORS[prior], activation="softplus", num_data=num_data
    )
    return ib.to(device)


def _binary_images(batch: int, device: torch.device) -> torch.Tensor:
    """Random binary 64x64 images (a step's time does not depend on what they show)."""
    generator = torch.Generator().manual_seed(1)
    return (torch.rand(batch, *VAE_SHAPE, generator=generator) < 0.1).float().to(device)  # (B, 1, 64, 64)


def bench_vae_priors(
    device: torch.device, priors: Sequence[str], repeats: int, warmup: int = 3, batch: int = VAE_BATCH
) -> dict:
    """For each prior: the project's step (:class:`~infodropout.train.engine.TrainStep`) against the
    hand-written step of the same network, parameters and loss (:func:`vae_handwritten_loss`), Adam,
    timed round-robin; ``ratio_vs_handwritten`` is project / hand-written."""
    out = {}
    x = _binary_images(batch, device)
    for prior in priors:
        pyro.set_rng_seed(0)
        ib = build_vae(prior, device)
        project = TrainStep(ib, make_optimizer("adam", ib.parameters(), VAE_LR, device=device), NUM_DATA, device)
        hand = HandwrittenStep(VAE, ib, make_optimizer("adam", ib.parameters(), VAE_LR, device=device))

        def run_project(ib=ib, project=project):
            with training_context(ib):
                project(x, None)

        variants = {"project": run_project, "handwritten": lambda hand=hand: hand(x, None)}
        steps = warmup
        if device.type == "cuda":  # the study's steps on a GPU are graphed: so are both sides here
            graphed_project = GraphedStep(TrainStep(ib, _capturable_adam(ib, device), NUM_DATA, device, "fp32"))
            graphed_hand = GraphedStep(HandwrittenStep(VAE, ib, _capturable_adam(ib, device)))

            def run_graphed(ib=ib, graphed=graphed_project):
                if graphed.graph is not None:  # a replay runs no Python model code
                    return graphed(x, None)
                with training_context(ib):
                    graphed(x, None)

            variants["project_graph"] = run_graphed
            variants["handwritten_graph"] = lambda graphed=graphed_hand: graphed(x, None)
            steps = max(warmup, graphed_project.warmup + 2)  # capture before the timed rounds
        ms = _time_round_robin(variants, device, steps, repeats)
        out[prior] = {"median_ms": ms, "ratio_vs_handwritten": ms["project"] / ms["handwritten"]}
        if "project_graph" in ms:
            out[prior]["graph_ratio_vs_handwritten_graph"] = ms["project_graph"] / ms["handwritten_graph"]
    return {"batch_size": batch, "input_shape": list(VAE_SHAPE), "priors": out}


def _capturable_adam(ib, device: torch.device):
    """Adam for a graphed step (its state on the device: capturable)."""
    return make_optimizer("adam", ib.parameters(), VAE_LR, device=device, capturable=True)


def step_flops(step: TrainStep, x: torch.Tensor, y: torch.Tensor | None = None) -> int:
    """The FLOPs of one forward and backward pass of ``step`` on ``(x, y)`` that ``FlopCounterMode`` counts:
    the matrix products and convolutions (2 per multiply-add), forward and backward; elementwise ops are
    not counted. The gradients it leaves are cleared."""
    counter = FlopCounterMode(display=False)
    with training_context(step.ib), counter:
        step.forward_backward(x, y)
    step.optimizer.zero_grad(set_to_none=True)
    step.reset()
    return int(counter.get_total_flops())


def gemm_gflops(size: int = GEMM_SIZE, dtype: torch.dtype = torch.float32, repeats: int = 3) -> float:
    """GFLOP/s of a ``size`` x ``size`` matrix product (``2 size^3`` FLOPs) on one CPU thread, the best of
    ``repeats`` after a warm-up: the practical peak of one core for that dtype."""
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(size, size, generator=generator).to(dtype)
    b = torch.randn(size, size, generator=generator).to(dtype)
    c = torch.empty(size, size, dtype=dtype)
    best = math.inf
    with torch_threads(1):
        torch.mm(a, b, out=c)
        for _ in range(repeats):
            start = time.perf_counter()
            torch.mm(a, b, out=c)
            best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e9


def bench_vae_cpu(
    repeats: int,
    warmup: int = 3,
    batch: int = VAE_BATCH,
    prior: str = "factorised",
    threads: Sequence[int] | None = None,
    gemm_size: int = GEMM_SIZE,
) -> dict:
    """The CPU's figures for the dSprites VAE's project step (``prior``; the convolutions dominate, so the
    prior hardly matters): every combination of fp32 or bf16 autocast (bf16 only where the CPU has bf16
    arithmetic), contiguous or channels-last, and ``threads`` (default 1 and 2, as far as there are cores),
    timed round-robin. Each variant's GFLOP/s is :func:`step_flops` over its median time, and its
    ``fraction_of_peak`` that over ``threads`` times :func:`gemm_gflops` (fp32, one core).

    ``speedups`` divides the time of one variant by another's where they differ in one option only:
    ``bf16 over fp32``, ``channels-last over contiguous``, ``2 threads over 1`` (keyed by the other options),
    and ``over fp32 contiguous 1 thread`` for every variant."""
    device = torch.device("cpu")
    threads = sorted({1, min(2, available_cores())}) if threads is None else sorted(set(threads))
    precisions = ["fp32", "bf16"] if cpu_has_bf16() else ["fp32"]
    pyro.set_rng_seed(0)
    models = {"contiguous": build_vae(prior, device)}
    models["channels-last"] = copy.deepcopy(models["contiguous"]).to(memory_format=torch.channels_last)
    x = _binary_images(batch, device)
    inputs = {"contiguous": x, "channels-last": x.contiguous(memory_format=torch.channels_last)}
    steps, variants, options = {}, {}, {}
    for layout, ib in models.items():
        for precision in precisions:
            step = TrainStep(ib, make_optimizer("adam", ib.parameters(), VAE_LR), NUM_DATA, device, precision)
            for n in threads:
                key = f"{precision} {layout} {n} thread{'s' if n > 1 else ''}"
                steps[key], options[key] = step, {"precision": precision, "layout": layout, "threads": n}

                def run(step=step, ib=ib, xs=inputs[layout], n=n):
                    with torch_threads(n), training_context(ib):
                        step(xs, None)

                variants[key] = run
    first = next(iter(steps.values()))
    flops = step_flops(first, x)
    peak = {"fp32": gemm_gflops(gemm_size)}
    if "bf16" in precisions:
        peak["bf16"] = gemm_gflops(gemm_size, torch.bfloat16)
    ms = _time_round_robin(variants, device, warmup, repeats)
    table = {}
    for key, t in ms.items():
        gflops = flops / (t / 1000) / 1e9
        n = options[key]["threads"]
        table[key] = {**options[key], "median_ms": t, "gflops": gflops, "fraction_of_peak": gflops / (n * peak["fp32"])}
    return {
        "batch_size": batch,
        "prior": prior,
        "flops_per_step": flops,
        "gemm_size": gemm_size,
        "gemm_gflops_one_core": peak,
        "variants": table,
        "speedups": _speedups(table),
    }


def _speedups(table: dict) -> dict:
    """Time ratios between variants that differ in one option (see :func:`bench_vae_cpu`)."""

    def find(**want):
        for key, v in table.items():
            if all(v[k] == w for k, w in want.items()):
                return key
        return None

    out = {"bf16 over fp32": {}, "channels-last over contiguous": {}, "2 threads over 1": {}}
    pairs = (("bf16 over fp32", "precision", "fp32", "bf16"),
             ("channels-last over contiguous", "layout", "contiguous", "channels-last"),
             ("2 threads over 1", "threads", 1, 2))  # fmt: skip
    for name, option, slow, fast in pairs:
        for v in table.values():
            if v[option] != slow:
                continue
            other = find(**{**{k: v[k] for k in ("precision", "layout", "threads")}, option: fast})
            if other is not None:
                rest = ", ".join(str(v[k]) for k in ("precision", "layout", "threads") if k != option)
                out[name][rest] = v["median_ms"] / table[other]["median_ms"]
    base = find(precision="fp32", layout="contiguous", threads=1)
    if base is not None:
        out["over fp32 contiguous 1 thread"] = {k: table[base]["median_ms"] / v["median_ms"] for k, v in table.items()}
    return {k: v for k, v in out.items() if v}


#: The speed targets: (figure, where in the result, "<=" or ">=", bound), by device type.
TARGETS = {
    "cpu": [
        *[(f"{m} project / hand-written", ("models", m, "ratio_vs_handwritten"), "<=", 1.25) for m in MODELS],
        *[
            (f"{VAE} {p} project / hand-written", ("models", VAE, "priors", p, "ratio_vs_handwritten"), "<=", 1.25)
            for p in VAE_PRIORS
        ],
    ],
    "cuda": [
        *[(f"{m} project / hand-written, eager", ("models", m, "ratio_vs_handwritten"), "<=", 2.0) for m in MODELS],
        *[
            (f"{VAE} {p} project / hand-written, eager", ("models", VAE, "priors", p, "ratio_vs_handwritten"), "<=", 2)
            for p in VAE_PRIORS
        ],
        *[
            (f"{m} project / hand-written, graphed", ("models", m, "graph_ratio_vs_handwritten_graph"), "<=", 1.2)
            for m in MODELS
        ],
        *[
            (f"{m} speed-up over stock SVI, graphed", ("models", m, "graph_speedup_vs_stock_svi"), ">=", 8.0)
            for m in MODELS
        ],
        (
            "allcnn32 b512 bf16 images/s (H100)",
            ("throughput_allcnn32_bf16", "images_per_second", "project_information"),
            ">=",
            55_000.0,
        ),
    ],
}


def check_targets(result: dict, device_type: str) -> list[dict]:
    """Each target of ``device_type`` that ``result`` measured: its figure, bound and whether it is met."""
    checks = []
    for figure, path, op, bound in TARGETS.get(device_type, []):
        value = result
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        if value is None:
            continue  # not measured in this run (a subset of the models)
        met = value <= bound if op == "<=" else value >= bound
        checks.append({"figure": figure, "value": value, "target": f"{op} {bound:g}", "met": met})
    return checks


def check_bench_out(out: Path, overwrite: bool = False) -> Path:
    """``out/bench.json``, where a benchmark may write: ``out`` is a directory or not there yet, and an
    existing ``bench.json`` is replaced only with ``overwrite`` (one-line errors, before any timing)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out}: is a file, not a directory for bench.json")
    path = out / "bench.json"
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists (an earlier benchmark): choose another --out or pass --overwrite")
    try:  # a directory that cannot take bench.json fails now, not after minutes of timing
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as err:
        raise NotWritable(f"--out {out}: cannot be written ({os_reason(err)})") from None
    return path


def run_bench(
    device: str = "auto",
    out: Path | None = None,
    models=None,
    repeats: int | None = None,
    overwrite: bool = False,
    priors: Sequence[str] | None = None,
    threads: int | None = None,
    *,
    warmup: int = 3,
    vae_batch: int = VAE_BATCH,
    gemm_size: int = GEMM_SIZE,
) -> dict:
    """Benchmark every part in ``models`` (default: all of :data:`PARTS`; ``dsprites-vae`` with ``priors``,
    default all of :data:`VAE_PRIORS`) and write ``out/bench.json`` (an existing one only with
    ``overwrite``). The steps run with ``threads`` torch threads (default: the thread policy's for one
    run, :func:`~infodropout.train.threads.plan_threads`), except the CPU figures, which set their own."""
    dev = resolve_device(device)
    models = list(models or PARTS)
    unknown = [m for m in models if m not in PARTS]
    if unknown:
        raise ValueError(f"models={unknown}: expected names from {PARTS}")
    priors = list(priors or VAE_PRIORS)
    unknown = [p for p in priors if p not in VAE_PRIORS]
    if unknown:
        raise ValueError(f"priors={unknown}: expected names from {tuple(VAE_PRIORS)}")
    target = None if out is None else check_bench_out(out, overwrite)
    plan = plan_threads(1, threads)
    if plan.note:
        print(f"bench: {plan.note}; timings on a busy machine do not carry over")
    with torch_threads(plan.threads):
        result = {
            "device": str(dev),
            "device_name": _device_name(dev),
            "threads": torch.get_num_threads(),
            "omp_wait_policy": wait_policy(),
            "load_average": plan.load,
            "versions": package_versions(),
            "models": {},
        }
        for name in models:
            if name == VAE:
                continue
            reps = repeats or (50 if dev.type == "cuda" else (21 if name == "mlp" else 6))  # rotations of 3 (CPU)
            r = bench_model(name, dev, reps, warmup)
            result["models"][name] = r
            print(_line(name, r))
        if dev.type == "cuda" and "allcnn32" in models:
            result["throughput_allcnn32_bf16"] = t = bench_throughput(dev)
            rates = ", ".join(f"{k} {v:,.0f}" for k, v in t["images_per_second"].items())
            print(f"allcnn32 b512 bf16 images/s: {rates}")
        if VAE in models:
            reps = repeats or (50 if dev.type == "cuda" else 20)  # rotations of 2 (priors), of 8 (CPU figures)
            result["models"][VAE] = vae = bench_vae_priors(dev, priors, reps, warmup, vae_batch)
            for prior, r in vae["priors"].items():
                print(_vae_line(prior, r, vae["batch_size"]))
            if dev.type == "cpu":
                vae["cpu"] = cpu = bench_vae_cpu(reps, warmup, vae_batch, gemm_size=gemm_size)
                print(_cpu_figures(cpu))
    result["targets"] = check_targets(result, dev.type)
    for c in result["targets"]:
        print(f"target {c['figure']}: {c['value']:,.3f} ({c['target']}) {'met' if c['met'] else 'MISSED'}")
    if target is not None:
        target.parent.mkdir(parents=True, exist_ok=True)
        write_json(target, result)
        print(f"wrote {target}")
    return result


def _device_name(dev: torch.device) -> str:
    if dev.type == "cuda":
        return torch.cuda.get_device_name(dev)
    return f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"


def _vae_line(prior: str, r: dict, batch: int) -> str:
    ms = r["median_ms"]
    return (
        f"{VAE} {prior:>19} b{batch}: project {ms['project']:.2f} ms  hand-written {ms['handwritten']:.2f} ms  "
        f"ratio vs hand-written {r['ratio_vs_handwritten']:.3f}"
    )


def _cpu_figures(cpu: dict) -> str:
    """The CPU figures of :func:`bench_vae_cpu` as lines: the peak, one line per variant, the speed-ups."""
    peak = "  ".join(f"{k} {v:.1f}" for k, v in cpu["gemm_gflops_one_core"].items())
    lines = [
        f"{VAE} CPU figures (b{cpu['batch_size']}, {cpu['flops_per_step'] / 1e9:.2f} GFLOP per step; "
        f"GEMM {cpu['gemm_size']} on one core, GFLOP/s: {peak})"
    ]
    for key, v in cpu["variants"].items():
        lines.append(
            f"  {key:<32} {v['median_ms']:9.2f} ms  {v['gflops']:7.1f} GFLOP/s  "
            f"{100 * v['fraction_of_peak']:5.1f}% of fp32 peak x threads"
        )
    for name, ratios in cpu["speedups"].items():
        lines.append(f"  {name}: " + ", ".join(f"{k} {v:.2f}x" for k, v in ratios.items()))
    return "\n".join(lines)


def _line(name: str, r: dict) -> str:
    ms = r["median_ms"]
    parts = [f"{name:>9} b{r['batch_size']}:"] + [f"{k} {v:.2f} ms" for k, v in ms.items()]
    parts += [
        f"ratio vs hand-written {r['ratio_vs_handwritten']:.3f}",
        f"speed-up vs stock SVI {r['speedup_vs_stock_svi']:.2f}x",
    ]
    if "graph_ratio_vs_handwritten_graph" in r:
        parts += [
            f"graph ratio {r['graph_ratio_vs_handwritten_graph']:.3f}",
            f"graph speed-up {r['graph_speedup_vs_stock_svi']:.1f}x",
        ]
    return "  ".join(parts)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--models", nargs="+", default=None, help=f"of: {', '.join(PARTS)}")
    p.add_argument("--priors", nargs="+", default=None, help=f"of: {', '.join(VAE_PRIORS)}")
    p.add_argument("--repeats", type=int, default=None)
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args(argv)
    result = run_bench(args.device, args.out, args.models, args.repeats, priors=args.priors, threads=args.threads)
    print(json.dumps(result["models"], indent=1))
    return 0
