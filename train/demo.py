"""The main job of the README: information dropout against binary dropout on the same network."""

from pathlib import Path

from . import data as datalib
from .config import resolve
from .run import Trainer, create_run_dir


def _dataset(data_dir) -> str:
    try:
        datalib.get_dataset("mnist", data_dir)
    except datalib.DataDirNotFoundError:
        raise  # a --data-dir that is not there is a mistake to report, not a reason to use other data
    except datalib.DataNotFoundError as err:
        print(f"MNIST not found ({err}); using scikit-learn's bundled 8x8 digits instead")
        return "digits"
    return "mnist"


def run_demo(epochs: int = 3, data_dir=None, device: str = "auto", out: Path | None = None) -> dict:
    """Train the same MLP with information dropout and with binary dropout; print test errors and the
    information (KL per example, in nats) each information-dropout layer keeps about the input."""
    dataset = _dataset(data_dir)
    hidden = [256, 256, 256] if dataset == "mnist" else [128, 128, 128]
    if out is not None:
        out = create_run_dir(out)
    results = {}
    for kind in ("information", "binary"):
        config = resolve(
            "mnist-mlp",
            overrides=dict(
                dataset=dataset,
                dropout=kind,
                hidden=hidden,
                epochs=epochs,
                schedule="constant",
                batch_size=100 if dataset == "mnist" else 50,
                device=device,
                data_dir=data_dir,
            ),
        )
        print(f"\n{kind} dropout, MLP {'-'.join(map(str, hidden))} on {dataset}, {epochs} epochs")
        trainer = Trainer.start(config, out / kind) if out is not None else Trainer(config)
        results[kind] = trainer.fit()
    print(f"\n{'dropout':<12} {'test error':>10}   information per layer (nats per example)")
    for kind, final in results.items():
        kl = final["kl_per_layer"]
        layers = "  ".join(f"{site} {value:7.1f}" for site, value in kl.items()) if kl else "- (no learned noise)"
        print(f"{kind:<12} {final['test_error']:>9.2f}%   {layers}")
    return results
