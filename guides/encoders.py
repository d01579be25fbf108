"""Encoders: the networks of the paper's experiments up to (and including) their last noisy layer.

An encoder maps an input batch to its representation; its noisy layers own the guide's sample
sites. What follows the representation (classifier layers, a decoder) is the model's head.
"""

from collections.abc import Sequence

from torch import nn

from .layers import KINDS, GaussianLatent, InformationDropout, check_kind, dropout, noisy_conv2d, noisy_linear

LATENTS = ("gaussian", "information")
#: Kinds of noise of the fully-connected encoder: those of every noisy layer, and Deep VIB's.
MLP_KINDS = (*KINDS, "vib")


def conv_bn_relu(in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1, padding: int = 1):
    """``Conv2d -> BatchNorm2d -> ReLU`` (a deterministic block of the All-CNN networks)."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


def _check_positive(**values):
    for key, value in values.items():
        if not value > 0:
            raise ValueError(f"{key}={value}: expected a positive number")


class MLPEncoder(nn.Module):
    """Fully-connected layers, each a noisy layer: ``x (B, ...) -> z_1 -> ... -> z_L (B, hidden[-1])``.

    The MNIST experiments of the paper: three hidden layers of variable width, noise after each.
    Sites are named ``z1 ... zL``. ``dropout="vib"`` is the Deep Variational Information Bottleneck
    (Alemi et al. 2017) in the same network: deterministic layers, the last one a Gaussian latent
    ``z_L ~ Normal(loc(h), softplus(scale_head(h)))`` (the site ``zL``; its natural prior is N(0, 1)),
    read by the head like any other representation.

    :param int in_features: flattened input size (784 for MNIST).
    :param hidden: widths of the hidden layers.
    :param str dropout: kind of noise, one of :data:`MLP_KINDS`.
    :param str activation: ``"relu"`` or ``"softplus"``.
    :param float p: drop probability for binary and Gaussian dropout.
    :param float alpha_max: range of alpha for information dropout.
    """

    def __init__(
        self,
        in_features: int = 784,
        hidden: Sequence[int] = (1024, 1024, 1024),
        dropout: str = "information",
        activation: str = "relu",
        p: float = 0.5,
        alpha_min: float = 0.001,
        alpha_max: float = 0.7,
    ):
        super().__init__()
        if dropout not in MLP_KINDS:
            raise ValueError(f"dropout={dropout!r}: expected one of {MLP_KINDS}")
        hidden = tuple(int(h) for h in hidden)
        if not hidden:
            raise ValueError("hidden=(): expected at least one hidden layer width")
        _check_positive(in_features=in_features, **{f"hidden[{i}]": h for i, h in enumerate(hidden)})
        widths = (in_features, *hidden)
        self.layers = nn.ModuleList()
        for i in range(len(hidden)):
            if dropout == "vib" and i == len(hidden) - 1:
                layer = GaussianLatent.linear(widths[i], widths[i + 1])
            else:
                kind = "none" if dropout == "vib" else dropout
                layer = noisy_linear(kind, widths[i], widths[i + 1], activation, p, alpha_min, alpha_max)
            layer.name = f"z{i + 1}"
            self.layers.append(layer)
        self.out_features = hidden[-1]

    def forward(self, x):
        h = x.flatten(1)  # (B, D)
        for layer in self.layers:
            h = layer(h)  # (B, width)
        return h


class AllCNN32Encoder(nn.Module):
    """All-CNN-C (Springenberg et al. 2015) for 32x32 images, up to its second stride-2 layer.

    ``3x32x32 -> [conv 96, conv 96, noisy conv 96 /2] -> [conv 192, conv 192, noisy conv 192 /2] -> z2 (192, 8, 8)``

    The two stride-2 convolutions are the noisy layers (sites ``z1``, ``z2``): for information
    dropout they are the parallel f and alpha heads. Every conv has batch norm; the input gets binary
    dropout with probability ``input_dropout`` (0.2 in All-CNN-C and the authors' code, whatever the
    kind of the noisy layers). Channel counts scale with ``width``.
    """

    def __init__(
        self,
        in_channels: int = 3,
        width: float = 1.0,
        dropout: str = "information",
        p: float = 0.5,
        alpha_min: float = 0.001,
        alpha_max: float = 0.7,
        activation: str = "relu",
        input_dropout: float = 0.2,
    ):
        super().__init__()
        check_kind(dropout)
        _check_positive(in_channels=in_channels, width=width)
        if not 0 <= input_dropout < 1:
            raise ValueError(f"input_dropout={input_dropout}: expected a drop probability in [0, 1)")
        self.input_dropout = float(input_dropout)
        c1, c2 = max(1, round(96 * width)), max(1, round(192 * width))
        noisy = dict(activation=activation, p=p, alpha_min=alpha_min, alpha_max=alpha_max)
        self.block1 = nn.Sequential(conv_bn_relu(in_channels, c1), conv_bn_relu(c1, c1))
        self.drop1 = noisy_conv2d(dropout, c1, c1, 3, 2, 1, **noisy)
        self.block2 = nn.Sequential(conv_bn_relu(c1, c2), conv_bn_relu(c2, c2))
        self.drop2 = noisy_conv2d(dropout, c2, c2, 3, 2, 1, **noisy)
        self.drop1.name, self.drop2.name = "z1", "z2"
        self.out_channels = c2

    def forward(self, x):
        x = dropout(x, self.input_dropout, training=self.drop1.noisy)  # (B, C, H, W)
        h = self.drop1(self.block1(x))  # (B, c1, H/2, W/2)
        return self.drop2(self.block2(h))  # (B, c2, H/4, W/4)


class AllCNN96Encoder(nn.Module):
    """An All-CNN for 96x96 inputs (Cluttered MNIST) with four noisy stride-2 layers ``z1 ... z4``.

    ``1x96x96 -> [conv c, conv c, noisy conv c /2] x 4 -> z4 (192, 6, 6)`` with ``c = 32, 64, 96, 192``
    (times ``width``), batch norm on every conv, as in the authors' code.
    """

    def __init__(
        self,
        in_channels: int = 1,
        width: float = 1.0,
        dropout: str = "information",
        p: float = 0.5,
        alpha_min: float = 0.001,
        alpha_max: float = 1.0,
        activation: str = "relu",
    ):
        super().__init__()
        check_kind(dropout)
        _check_positive(in_channels=in_channels, width=width)
        channels = [max(1, round(c * width)) for c in (32, 64, 96, 192)]
        noisy = dict(activation=activation, p=p, alpha_min=alpha_min, alpha_max=alpha_max)
        blocks, c_in = [], in_channels
        for i, c in enumerate(channels):
            layer = noisy_conv2d(dropout, c, c, 3, 2, 1, **noisy)
            layer.name = f"z{i + 1}"
            blocks.append(nn.Sequential(conv_bn_relu(c_in, c), conv_bn_relu(c, c), layer))
            c_in = c
        self.blocks = nn.Sequential(*blocks)
        self.out_channels = channels[-1]

    def forward(self, x):
        return self.blocks(x)  # (B, c4, H/16, W/16)


def _latent_layer(latent: str, in_features: int, z_dim: int, alpha_max: float):
    if latent == "gaussian":
        return GaussianLatent.linear(in_features, z_dim, scale_fn="exp", name="z")
    if latent == "information":
        return InformationDropout.linear(in_features, z_dim, activation="softplus", alpha_max=alpha_max, name="z")
    raise ValueError(f"latent={latent!r}: expected one of {LATENTS}")


class VAEEncoder(nn.Module):
    """The MNIST VAE encoder (Kingma & Welling 2014; Pyro's VAE example): ``x -> 400 softplus -> z``.

    ``latent="gaussian"``: ``z ~ Normal(loc(h), exp(log_scale(h)))``, the classic VAE with a standard
    normal prior. ``latent="information"``: ``z = softplus(f(h)) * LogNormal(0, alpha(h)**2)``, the
    information-dropout bottleneck with a log-normal prior. The site is named ``z``.
    """

    def __init__(
        self,
        in_features: int = 784,
        hidden: int = 400,
        z_dim: int = 50,
        latent: str = "gaussian",
        alpha_max: float = 0.7,
    ):
        super().__init__()
        _check_positive(in_features=in_features, hidden=hidden, z_dim=z_dim)
        self.hidden = nn.Sequential(nn.Linear(in_features, hidden), nn.Softplus())
        self.latent = _latent_layer(latent, hidden, z_dim, alpha_max)
        self.z_dim = z_dim

    def forward(self, x):
        return self.latent(self.hidden(x.flatten(1)))  # (B, z_dim)


class ConvVAEEncoder(nn.Module):
    """The dSprites encoder of beta-VAE (Higgins et al. 2017), 64x64 binary images.

    ``1x64x64 -> conv 32 /2 -> conv 32 /2 -> conv 64 /2 -> conv 64 /2 (64x4x4) -> fc 256 -> z``
    (4x4 kernels, ReLU). The latent is Gaussian or information dropout as in :class:`VAEEncoder`.
    """

    def __init__(self, in_channels: int = 1, z_dim: int = 10, latent: str = "gaussian", alpha_max: float = 0.7):
        super().__init__()
        _check_positive(in_channels=in_channels, z_dim=z_dim)
        chans = (in_channels, 32, 32, 64, 64)
        convs = []
        for c_in, c_out in zip(chans[:-1], chans[1:], strict=True):
            convs += [nn.Conv2d(c_in, c_out, 4, 2, 1), nn.ReLU(inplace=True)]
        self.features = nn.Sequential(*convs, nn.Flatten(), nn.Linear(64 * 4 * 4, 256), nn.ReLU(inplace=True))
        self.latent = _latent_layer(latent, 256, z_dim, alpha_max)
        self.z_dim = z_dim

    def forward(self, x):
        return self.latent(self.features(x))  # (B, z_dim)
