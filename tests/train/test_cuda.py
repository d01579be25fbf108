"""The CUDA paths of the training step: graph capture, its fallback, bf16. Skipped without a GPU."""

import pytest
import torch

from infodropout.models.zoo import build_network
from infodropout.train.engine import GraphedStep, TrainStep, make_optimizer, make_step, training_context

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
CUDA = torch.device("cuda")


def _setup(dropout="information", precision="fp32", capturable=True):
    torch.manual_seed(0)
    ib = build_network(
        "allcnn32", (3, 16, 16), 10, width=0.1, dropout=dropout, beta=1e-4, num_data=1000, input_dropout=0.0
    ).to(CUDA)
    optimizer = make_optimizer("sgd", ib.parameters(), 0.01, device=CUDA, capturable=capturable)
    return ib, TrainStep(ib, optimizer, 1000, CUDA, precision)


def _batches(n):
    g = torch.Generator(device=CUDA).manual_seed(1)
    xs = [torch.randn(8, 3, 16, 16, device=CUDA, generator=g) for _ in range(n)]
    return [(x, torch.randint(0, 10, (8,), device=CUDA, generator=g)) for x in xs]


def test_a_graphed_deterministic_step_updates_like_the_eager_one():
    batches = _batches(6)
    ib_eager, eager = _setup("none")
    ib_graph, graph_step = _setup("none")
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


def test_capture_failure_falls_back_to_eager_with_a_message():
    ib, step = _setup()
    messages = []
    call = make_step(step, cuda_graph=True, log=messages.append)
    call.graphed.warmup = 0
    original = step.forward_backward

    def syncing(x, y):  # a host sync inside the step cannot be captured
        float(x.sum())
        original(x, y)

    step.forward_backward = syncing
    x, y = _batches(1)[0]
    with training_context(ib):
        call(x, y)
        call(x, y)
    assert len(messages) == 1 and "CUDA graph capture failed" in messages[0]
    assert step.read()["examples"] == 16
