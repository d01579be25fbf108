"""The CUDA paths of the training step: graph capture, its fallback, bf16. Skipped without a GPU."""

import pytest
import torch

from infodropout.models.zoo import build_network
from infodropout.train.config import resolve
from infodropout.train.engine import GraphedStep, TrainStep, make_optimizer, make_step, training_context
from infodropout.train.run import Trainer

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
CUDA = torch.device("cuda")


def _setup(dropout="information", precision="fp32", capturable=True, optimizer="sgd"):
    torch.manual_seed(0)
    ib = build_network(
        "allcnn32", (3, 16, 16), 10, width=0.1, dropout=dropout, beta=1e-4, num_data=1000, input_dropout=0.0
    ).to(CUDA)
    optimizer = make_optimizer(optimizer, ib.parameters(), 0.01, device=CUDA, capturable=capturable)
    return ib, TrainStep(ib, optimizer, 1000, CUDA, precision)


def _batches(n):
    g = torch.Generator(device=CUDA).manual_seed(1)
    xs = [torch.randn(8, 3, 16, 16, device=CUDA, generator=g) for _ in range(n)]
    return [(x, torch.randint(0, 10, (8,), device=CUDA, generator=g)) for x in xs]


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_a_graphed_deterministic_step_updates_like_the_eager_one(optimizer):
    batches = _batches(6)
    ib_eager, eager = _setup("none", capturable=False, optimizer=optimizer)
    ib_graph, graph_step = _setup("none", optimizer=optimizer)
    graphed = GraphedStep(graph_step, warmup=2)
    with training_context(ib_eager), training_context(ib_graph):
        for x, y in batches:
            eager(x, y)
            graphed(x, y)
    assert graphed.graph is not None
    for (name, a), b in zip(ib_eager.state_dict().items(), ib_graph.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5, msg=name)
    assert eager.read()["examples"] == graph_step.read()["examples"] == 48
    losses = torch.tensor([eager.read()["loss"], graph_step.read()["loss"]])
    torch.testing.assert_close(losses[0], losses[1], rtol=1e-4, atol=0)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_a_graphed_information_dropout_step_trains(precision):
    ib, step = _setup(precision=precision)
    graphed = GraphedStep(step, warmup=2)
    x, y = _batches(1)[0]
    before = [p.detach().clone() for p in ib.parameters()]
    with training_context(ib):
        for _ in range(20):
            graphed(x, y)
    assert graphed.graph is not None and step.first_bad_step() is None
    assert any(not torch.equal(a, b) for a, b in zip(before, ib.parameters(), strict=True))
    read = step.read()
    assert read["examples"] == 160 and all(v > 0 for v in read["kl"].values())


def test_a_step_that_syncs_with_the_host_is_found_before_capture_and_runs_eagerly():
    ib, step = _setup()
    messages = []
    call = make_step(step, cuda_graph=True, log=messages.append)
    call.graphed.warmup = 1  # the one warm-up step is the checked one
    original = step.forward_backward

    def syncing(x, y):  # a host sync inside the step cannot be captured
        float(x.sum())
        original(x, y)

    step.forward_backward = syncing
    x, y = _batches(1)[0]
    with training_context(ib):
        for _ in range(3):
            call(x, y)
    assert len(messages) == 1 and "cannot be captured" in messages[0], messages
    assert "test_cuda.py:" in messages[0]  # names the line that synced
    assert call.graphed is None and step.read()["examples"] == 24


@pytest.mark.parametrize(
    "arch, shape, options",
    [
        ("mlp", (1, 8, 8), dict(hidden=(16, 12))),
        ("mlp", (1, 8, 8), dict(hidden=(16, 12), activation="softplus", prior="correlated")),
        ("mlp", (1, 8, 8), dict(hidden=(16, 12), activation="softplus", prior="factorised")),
        ("allcnn32", (3, 16, 16), dict(width=0.05)),
        ("vae", (1, 8, 8), dict(hidden=(16,), z_dim=3, latent="information", likelihood="bernoulli")),
        ("mlp", (1, 8, 8), dict(hidden=(16,), dropout="binary")),
    ],
)
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_no_step_synchronises_with_the_host_on_the_gpu(arch, shape, options, optimizer):
    """What the CPU test's Python-level watch cannot see: syncs inside torch's own kernels and optimizers."""
    torch.manual_seed(0)
    ib = build_network(arch, shape, 4, beta=0.1, num_data=100, **options).to(CUDA)
    ib.beta = torch.full((), 0.1, device=CUDA)
    step = TrainStep(ib, make_optimizer(optimizer, ib.parameters(), 1e-3, device=CUDA, capturable=True), 100, CUDA)
    x = torch.rand(6, *shape, device=CUDA)
    y = None if arch == "vae" else torch.randint(0, 4, (6,), device=CUDA)
    with training_context(ib):
        step(x, y)  # traces the site layout and creates the optimizer state
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error")
        try:
            step(x, y)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    assert step.first_bad_step() is None


def test_a_batch_of_another_shape_after_capture_runs_eagerly():
    ib, step = _setup()
    graphed = GraphedStep(step, warmup=1)
    batches = _batches(3)
    with training_context(ib):
        for x, y in batches:
            graphed(x, y)
        graph = graphed.graph
        x, y = batches[0]
        graphed(x[:5], y[:5])  # a short last batch
        graphed(x, y)
    assert graph is not None and graphed.graph is graph
    assert step.read()["examples"] == 3 * 8 + 5 + 8 and step.first_bad_step() is None


@pytest.mark.parametrize(
    "preset, changes",
    [("mnist-mlp", {"hidden": [64, 64]}), ("mnist-vae", {"hidden": [64], "z_dim": 8, "latent": "information"})],
)
def test_a_graphed_training_run_captures_and_learns(preset, changes):
    """Whole runs on the GPU with the presets' Adam, a learning-rate schedule and a beta warm-up."""
    messages = []
    overrides = dict(dataset="digits", epochs=3, batch_size=50, device="cuda", beta_warmup_epochs=1, **changes)
    trainer = Trainer(resolve(preset, overrides=overrides), log=messages.append, show_progress=False)
    trainer.fit()
    assert trainer._call_step.graphed is not None and trainer._call_step.graphed.graph is not None
    assert not any("capture failed" in m for m in messages), messages
    losses = [r["train_loss"] for r in trainer.history]
    assert losses[-1] < losses[0], losses
