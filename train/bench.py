"""Speed of the project's training step against a hand-written PyTorch step of the same model and
parameters, and against stock ``pyro.infer.SVI.step``, measured in one process (ratios, not absolute
times, are what carry over between runs on a shared machine).
"""

import json
import math
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pyro
import torch
from torch.nn import functional as F

from infodropout.guides.layers import InformationDropout
from infodropout.models import InformationBottleneck
from infodropout.models.zoo import build_network

from .checkpoint import write_json
from .engine import GraphedStep, TrainStep, autocast, make_optimizer, training_context
from .errors import NotWritable, os_reason
from .run import package_versions, resolve_device

#: name -> (architecture, input shape, batch size, extra build options)
MODELS = {
    "mlp": ("mlp", (1, 28, 28), 128, {"hidden": (1024, 1024, 1024)}),
    "allcnn32": ("allcnn32", (3, 32, 32), 128, {}),
}
NUM_DATA = 50_000
BETA = 3 / NUM_DATA
LR = 0.01


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
    ``mean cross-entropy + beta * (sum of KLs) / B`` (ReLU units, log-uniform prior)."""
    enc = ib.encoder
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


#: The speed targets: (figure, where in the result, "<=" or ">=", bound), by device type.
TARGETS = {
    "cpu": [(f"{m} project / hand-written", ("models", m, "ratio_vs_handwritten"), "<=", 1.25) for m in MODELS],
    "cuda": [
        *[(f"{m} project / hand-written, eager", ("models", m, "ratio_vs_handwritten"), "<=", 2.0) for m in MODELS],
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
    device: str = "auto", out: Path | None = None, models=None, repeats: int | None = None, overwrite: bool = False
) -> dict:
    """Benchmark every model in ``models`` (default: all) and write ``out/bench.json`` (an existing one only
    with ``overwrite``)."""
    dev = resolve_device(device)
    models = list(models or MODELS)
    unknown = [m for m in models if m not in MODELS]
    if unknown:
        raise ValueError(f"models={unknown}: expected names from {tuple(MODELS)}")
    target = None if out is None else check_bench_out(out, overwrite)
    result = {"device": str(dev), "device_name": _device_name(dev), "versions": package_versions(), "models": {}}
    for name in models:
        reps = repeats or (50 if dev.type == "cuda" else (21 if name == "mlp" else 6))  # rotations of 3 (CPU)
        r = bench_model(name, dev, reps)
        result["models"][name] = r
        print(_line(name, r))
    if dev.type == "cuda" and "allcnn32" in models:
        result["throughput_allcnn32_bf16"] = t = bench_throughput(dev)
        print("allcnn32 b512 bf16 images/s: " + ", ".join(f"{k} {v:,.0f}" for k, v in t["images_per_second"].items()))
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
    import platform

    return f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"


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
    import argparse

    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--models", nargs="+", default=None)
    p.add_argument("--repeats", type=int, default=None)
    args = p.parse_args(argv)
    print(json.dumps(run_bench(args.device, args.out, args.models, args.repeats)["models"], indent=1))
    return 0
