"""The training step: no host synchronisation inside it, and its accumulators are the ELBO's parts."""

import pytest
import torch
from torch.overrides import TorchFunctionMode

from infodropout.models.zoo import build_network
from infodropout.train.elbo import MeanFieldELBO
from infodropout.train.engine import GraphedStep, TrainStep, _where, make_optimizer, training_context

from common import assert_close

# Calls that make the host wait for the device (or copy host data to it) when tensors live on a GPU.
_SYNCING = {
    torch.Tensor.cpu,
    torch.equal,
    torch.Tensor.equal,
    torch.Tensor.item,
    torch.Tensor.tolist,
    torch.Tensor.__bool__,
    torch.Tensor.__int__,
    torch.Tensor.__float__,
    torch.Tensor.__index__,
    torch.Tensor.numpy,
    torch.Tensor.nonzero,
    torch.nonzero,
    torch.Tensor.masked_select,
    torch.masked_select,
    torch.Tensor.unique,
    torch.unique,
    torch.tensor,
}


class _NoHostSync(TorchFunctionMode):
    def __init__(self):
        super().__init__()
        self.calls = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in _SYNCING or (func is torch.Tensor.to and _to_cpu(args[1:], kwargs)):
            self.calls.append(getattr(func, "__name__", str(func)))
        return func(*args, **kwargs)


def _to_cpu(args, kwargs) -> bool:
    """Whether ``Tensor.to(*args, **kwargs)`` names the CPU (a device-to-host copy on a GPU)."""
    targets = [*args, kwargs.get("device")]
    return any(isinstance(t, (str, torch.device)) and torch.device(t).type == "cpu" for t in targets if t is not None)


@pytest.mark.parametrize(
    "arch, shape, options",
    [
        ("mlp", (1, 8, 8), dict(hidden=(16, 12))),
        ("mlp", (1, 8, 8), dict(hidden=(16, 12), activation="softplus", prior="correlated")),
        ("allcnn32", (3, 16, 16), dict(width=0.05)),
        ("vae", (1, 8, 8), dict(hidden=(20,), z_dim=3, latent="information")),
        ("mlp", (1, 8, 8), dict(hidden=(16,), dropout="binary")),
    ],
)
@pytest.mark.parametrize("tensor_beta", [False, True])
def test_a_training_step_issues_no_host_synchronisation(arch, shape, options, tensor_beta):
    torch.manual_seed(0)
    ib = build_network(arch, shape, 4, beta=0.1, num_data=100, **options)
    if tensor_beta:  # how a CUDA graph sees a beta that is warmed up
        ib.beta = torch.full((), 0.1)
    step = TrainStep(ib, make_optimizer("adam", ib.parameters(), 1e-2), 100, torch.device("cpu"))
    x = torch.rand(6, *shape)
    y = None if arch == "vae" else torch.randint(0, 4, (6,))
    with training_context(ib):
        step(x, y)  # the first call traces the site layout (once per input shape): not a training step
        for _ in range(2):
            step.optimizer.zero_grad(set_to_none=True)
            with _NoHostSync() as watch:
                step.forward_backward(x, y)  # guide, model, ELBO, backward, accumulators
            step.optimizer.step()  # torch's (fused on CUDA)
            assert watch.calls == []


def test_the_watch_catches_a_sync():
    with _NoHostSync() as watch:
        torch.ones(2).sum().item()
        bool(torch.ones(()) > 0)
        torch.ones(2).cpu()
        torch.ones(2).to("cpu")
        torch.ones(2).to(device=torch.device("cpu"))
        torch.equal(torch.ones(2), torch.ones(2))
        torch.ones(2).to(torch.float64)  # a dtype change stays on the device: not a sync
    assert watch.calls == ["item", "__bool__", "cpu", "to", "to", "equal"]


def test_recalibration_sets_batchnorm_statistics_to_the_averages_of_noise_free_batch_statistics():
    """Running mean and variance after recalibrating = the mean over batches of each batch-norm input's batch
    mean and unbiased batch variance, with the noise off; the mode, momentum and noise are left as they were."""
    import copy

    from infodropout.guides.layers import sampling
    from infodropout.train.engine import recalibrate_batchnorm

    torch.manual_seed(0)
    ib = build_network("allcnn32", (3, 16, 16), 4, width=0.05, beta=0.1, num_data=100)
    norms = [m for m in ib.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for m in norms:  # statistics as training would leave them: anything but the answer
        m.running_mean.uniform_(-1, 1)
        m.running_var.uniform_(0.5, 2)
    batches = [(torch.rand(8, 3, 16, 16), torch.randint(0, 4, (8,))) for _ in range(3)]
    inputs = {i: [] for i in range(len(norms))}
    clean = copy.deepcopy(ib).train()
    hooks = [
        m.register_forward_pre_hook(lambda mod, args, i=i: inputs[i].append(args[0].detach()))
        for i, m in enumerate(m for m in clean.modules() if isinstance(m, torch.nn.BatchNorm2d))
    ]
    with torch.no_grad(), sampling(False):
        for x, _ in batches:
            clean.head(clean.encoder(x))  # train-mode batch norm normalises with batch statistics
    for h in hooks:
        h.remove()
    ib.eval()
    recalibrate_batchnorm(ib, batches)
    assert not ib.training and all(m.momentum == 0.1 for m in norms)
    for i, m in enumerate(norms):
        means = torch.stack([h.mean((0, 2, 3)) for h in inputs[i]])  # (batches, C)
        variances = torch.stack([h.var((0, 2, 3), unbiased=True) for h in inputs[i]])
        assert_close(m.running_mean, means.mean(0), rtol=1e-4, atol=1e-6)
        assert_close(m.running_var, variances.mean(0), rtol=1e-4, atol=1e-6)
        assert int(m.num_batches_tracked) == len(batches)
    # the noise matters here: with it on, the last batch norm would see other inputs
    noisy, seen = copy.deepcopy(ib).train(), []
    last = [m for m in noisy.modules() if isinstance(m, torch.nn.BatchNorm2d)][-1]
    last.register_forward_pre_hook(lambda mod, args: seen.append(args[0].detach()))
    with torch.no_grad(), sampling(True):
        noisy.head(noisy.encoder(batches[0][0]))
    assert not torch.allclose(seen[0].mean((0, 2, 3)), inputs[len(norms) - 1][0].mean((0, 2, 3)))


def test_accumulators_are_the_per_example_loss_and_its_parts():
    torch.manual_seed(0)
    ib = build_network("mlp", (1, 8, 8), 4, hidden=(16, 12), beta=0.3, num_data=60).double()
    optimizer = make_optimizer("sgd", ib.parameters(), 0.0, momentum=0.0)  # lr 0: parameters stay put
    step = TrainStep(ib, optimizer, 60, torch.device("cpu"))
    batches = [(torch.rand(6, 1, 8, 8, dtype=torch.float64), torch.randint(0, 4, (6,))) for _ in range(3)]
    torch.manual_seed(1)
    with training_context(ib):
        for x, y in batches:
            step(x, y)
    torch.manual_seed(1)
    loss = nll = 0.0
    kl = {s: 0.0 for s in ib.latent_sites}
    with training_context(ib):
        for x, y in batches:
            terms = MeanFieldELBO().terms(ib.model, ib.guide, x, y)
            loss += terms.loss.item() / 60 * 6
            nll += terms.nll.item()
            for s in kl:
                kl[s] += terms.kl[s].item()
    read = step.read()
    assert read["examples"] == 18
    assert_close(read["loss"], loss / 18, rtol=1e-5)
    assert_close(read["nll"], nll / 18, rtol=1e-5)
    for s in kl:
        assert_close(read["kl"][s], kl[s] / 18, rtol=1e-5)
    assert_close(read["loss"], read["nll"] + 0.3 * sum(read["kl"].values()), rtol=1e-5)
    step.reset()
    assert step.read()["examples"] == 0


@pytest.mark.parametrize("name", ["sgd", "adam", "adamw"])
def test_a_capturable_optimizer_keeps_its_learning_rate_and_adam_state_on_the_device(name):
    params = [torch.nn.Parameter(torch.zeros(3))]
    plain = make_optimizer(name, params, 0.1)
    captured = make_optimizer(name, params, 0.1, capturable=True)
    assert plain.param_groups[0]["lr"] == 0.1 and not plain.param_groups[0].get("capturable", False)
    lr = captured.param_groups[0]["lr"]
    assert isinstance(lr, torch.Tensor) and lr.item() == pytest.approx(0.1)
    if name != "sgd":  # without capturable=True torch refuses to capture Adam's step
        assert captured.param_groups[0]["capturable"] is True


def test_a_graphed_step_needs_an_eager_warm_up_step():
    """Optimizer state must exist before a capture: its first-step branches would be baked into the graph."""
    ib = build_network("mlp", (1, 8, 8), 4, hidden=(8,))
    step = TrainStep(ib, make_optimizer("sgd", ib.parameters(), 0.1), 10, torch.device("cpu"))
    with pytest.raises(ValueError, match="warmup=0"):
        GraphedStep(step, warmup=0)


def test_a_capture_error_names_the_innermost_line_outside_torch():
    def syncing():
        torch.ones(2).sum().item()
        raise RuntimeError("called a synchronizing CUDA operation")  # what sync debug mode raises there

    with pytest.raises(RuntimeError) as info:
        syncing()
    line = syncing.__code__.co_firstlineno + 2
    assert _where(info.value) == f" at {__file__}:{line}"
