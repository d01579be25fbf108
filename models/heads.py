"""Task heads and decoders: from the representation to the parameters of the likelihood."""

from torch import nn

from infodropout.guides.encoders import conv_bn_relu


class LinearHead(nn.Module):
    """``z (..., *event) -> logits (..., num_classes)``: flatten the ``in_dims`` trailing dims, one linear layer."""

    def __init__(self, in_features: int, num_classes: int = 10, in_dims: int = 1):
        super().__init__()
        self.linear = nn.Linear(in_features, num_classes)
        self.in_dims = in_dims

    def forward(self, z):
        return self.linear(z.flatten(-self.in_dims) if self.in_dims > 1 else z)  # (..., K)


class AllCNNHead(nn.Module):
    """The end of All-CNN-C: ``conv 3x3 -> conv 1x1 -> conv 1x1 (num_classes) -> global average pool``."""

    def __init__(self, in_channels: int, num_classes: int = 10, width: float = 1.0):
        super().__init__()
        c = max(1, round(192 * width))
        self.features = nn.Sequential(conv_bn_relu(in_channels, c, 3, 1, 1), conv_bn_relu(c, c, 1, 1, 0))
        self.classifier = nn.Conv2d(c, num_classes, 1)

    def forward(self, z):
        return self.classifier(self.features(z)).mean((-2, -1))  # (B, K)


class MLPDecoder(nn.Module):
    """The MNIST VAE decoder (Pyro's VAE example): ``z -> 400 softplus -> logits (B, *out_shape)``."""

    def __init__(self, z_dim: int = 50, hidden: int = 400, out_shape=(1, 28, 28)):
        super().__init__()
        self.out_shape = tuple(out_shape)
        out = 1
        for s in self.out_shape:
            out *= s
        self.net = nn.Sequential(nn.Linear(z_dim, hidden), nn.Softplus(), nn.Linear(hidden, out))

    def forward(self, z):
        return self.net(z).unflatten(-1, self.out_shape)  # (B, *out_shape) logits


class ConvDecoder(nn.Module):
    """The dSprites decoder of beta-VAE: ``z -> fc 256 -> fc 64x4x4 -> 4 transposed convs -> logits (B, 1, 64, 64)``."""

    def __init__(self, z_dim: int = 10, out_channels: int = 1):
        super().__init__()
        self.fc = nn.Sequential(
            nn.Linear(z_dim, 256), nn.ReLU(inplace=True), nn.Linear(256, 64 * 4 * 4), nn.ReLU(inplace=True)
        )
        chans = (64, 64, 32, 32, out_channels)
        layers = []
        for i, (c_in, c_out) in enumerate(zip(chans[:-1], chans[1:], strict=True)):
            layers.append(nn.ConvTranspose2d(c_in, c_out, 4, 2, 1))
            if i < len(chans) - 2:
                layers.append(nn.ReLU(inplace=True))
        self.deconv = nn.Sequential(*layers)

    def forward(self, z):
        return self.deconv(self.fc(z).unflatten(-1, (64, 4, 4)))  # (B, C, 64, 64) logits
