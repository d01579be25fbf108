"""The registry and ArrayDataset: names, shapes, statistics, views and the digits split."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from infodropout.train.data import DATASETS, ArrayDataset, channel_stats, get_dataset, to_float


def test_unknown_name_lists_the_valid_ones():
    with pytest.raises(ValueError, match="unknown data set 'mnsit'") as info:
        get_dataset("mnsit")
    for name in DATASETS:
        assert name in str(info.value)


def test_unknown_option_is_refused():
    with pytest.raises(TypeError, match="n_train"):
        get_dataset("digits", n_train=5)


def test_mnist_dataset(data_dir):
    ds = get_dataset("mnist", data_dir)
    assert isinstance(ds, ArrayDataset)
    assert ds.x_train.shape == (60000, 1, 28, 28) and ds.x_test.shape == (10000, 1, 28, 28)
    assert ds.x_train.dtype == torch.uint8 and ds.y_train.dtype == torch.int64
    assert ds.input_shape == (1, 28, 28) and ds.num_classes == 10 and ds.classes[3] == "3"
    assert ds.mean[0] == pytest.approx(0.1307, abs=5e-5) and ds.std[0] == pytest.approx(0.3081, abs=5e-5)
    standard = ds.float_images("train")
    assert float(standard.mean()) == pytest.approx(0.0, abs=1e-4)
    assert float(standard.std()) == pytest.approx(1.0, abs=1e-4)
    plain = ds.float_images("test", standardize=False)
    assert float(plain.min()) == 0.0 and float(plain.max()) == 1.0


def test_cifar10_dataset(data_dir, cifar_cache):
    ds = get_dataset("cifar10", data_dir, cache=cifar_cache)
    assert ds.input_shape == (3, 32, 32) and ds.classes[0] == "airplane" and ds.classes[-1] == "truck"
    assert ds.mean == pytest.approx((0.4913, 0.4821, 0.4465), abs=1e-4)
    assert torch.bincount(ds.y_test).tolist() == [1000] * 10


def test_channel_stats_are_exact():
    x = torch.randint(0, 256, (50, 3, 5, 7), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    mean, std = channel_stats(x)
    values = x.double().div(255).transpose(0, 1).reshape(3, -1)
    assert mean == pytest.approx(values.mean(1).tolist(), abs=1e-12)
    assert std == pytest.approx(values.std(1, unbiased=False).tolist(), abs=1e-12)


def test_to_float_standardises_per_channel():
    x = torch.full((2, 2, 1, 1), 51, dtype=torch.uint8)  # 0.2
    out = to_float(x, (0.1, 0.3), (0.5, 0.25))
    torch.testing.assert_close(out[:, :, 0, 0], torch.tensor([[0.2, -0.4], [0.2, -0.4]]))


def test_digits_split_is_stratified_and_fixed():
    from sklearn.datasets import load_digits

    ds = get_dataset("digits", seed=0)
    again = get_dataset("digits", seed=9)  # the split does not follow the seed
    assert ds.x_train.shape == (1497, 1, 8, 8) and ds.x_test.shape == (300, 1, 8, 8)
    assert torch.equal(ds.x_test, again.x_test)
    full = np.bincount(load_digits().target)
    test_counts = torch.bincount(ds.y_test).numpy()
    assert np.all(np.abs(test_counts - full * 300 / 1797) <= 1)
    everything = torch.cat([ds.x_train, ds.x_test]).flatten(1)
    expected = torch.from_numpy(np.rint(load_digits().data * 255 / 16).astype(np.uint8))
    assert torch.equal(everything.unique(dim=0), expected.unique(dim=0))
    assert int(ds.x_train.max()) == 255


def test_torch_dataset_view_and_dataloader():
    ds = get_dataset("digits")
    view = ds.as_torch_dataset("test")
    assert len(view) == 300
    image, label = view[7]
    torch.testing.assert_close(image, ds.float_images("test")[7])
    assert label == int(ds.y_test[7])
    xb, yb = next(iter(DataLoader(view, batch_size=32)))
    assert xb.shape == (32, 1, 8, 8) and torch.equal(yb, ds.y_test[:32])
    raw = ds.as_torch_dataset("train", standardize=False, target_transform=lambda y: y + 100)
    assert float(raw[0][0].max()) <= 1.0 and raw[0][1] == int(ds.y_train[0]) + 100


def test_dataset_loader_and_device_copy():
    ds = get_dataset("digits")
    train = ds.loader("train", batch_size=100)
    test = ds.loader("test", batch_size=128)
    assert len(train) == 14 and len(test) == 3  # drop_last for train only
    assert torch.equal(torch.cat([y for _, y in test]), ds.y_test)  # test in order
    moved = ds.to("cpu")
    assert moved is not ds and torch.equal(moved.x_train, ds.x_train) and moved.mean == ds.mean
    with pytest.raises(ValueError, match="unknown split 'val'"):
        ds.images("val")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_dataset_on_the_gpu(data_dir):
    ds = get_dataset("mnist", data_dir, device="cuda")
    assert ds.x_train.is_cuda and ds.y_test.is_cuda
    assert ds.mean[0] == pytest.approx(0.1307, abs=5e-5)
    cluttered = get_dataset("cluttered-mnist", data_dir, device="cuda", n_train=200, n_test=50)
    on_cpu = get_dataset("cluttered-mnist", data_dir, n_train=200, n_test=50)
    assert torch.equal(cluttered.x_train.cpu(), on_cpu.x_train)  # same seed, same images anywhere
