"""The networks of the paper's experiments, each assembled into an :class:`InformationBottleneck`."""

from collections.abc import Sequence

from infodropout.guides.encoders import AllCNN32Encoder, AllCNN96Encoder, ConvVAEEncoder, MLPEncoder, VAEEncoder

from .bottleneck import InformationBottleneck
from .heads import AllCNNHead, ConvDecoder, LinearHead, MLPDecoder

#: Architecture names, as configs and the command line use them.
ARCHITECTURES = ("mlp", "allcnn32", "allcnn96", "vae", "conv-vae")


def _numel(shape: Sequence[int]) -> int:
    n = 1
    for s in shape:
        n *= int(s)
    return n


def build_network(
    arch: str,
    input_shape: Sequence[int],
    num_classes: int = 10,
    *,
    dropout: str = "information",
    prior=None,
    beta: float = 1.0,
    num_data: int | None = None,
    hidden: Sequence[int] = (1024, 1024, 1024),
    width: float = 1.0,
    activation: str = "relu",
    p: float = 0.5,
    alpha_max: float = 0.7,
    z_dim: int = 10,
    latent: str = "gaussian",
    likelihood: str = "bernoulli",
    input_dropout: float = 0.2,
    kl_convention: str = "exact",
) -> InformationBottleneck:
    """Build the network ``arch`` (one of :data:`ARCHITECTURES`) as an InformationBottleneck.

    Classifiers (``mlp``, ``allcnn32``, ``allcnn96``) use ``dropout``, ``activation``, ``p``,
    ``alpha_max``, ``hidden`` or ``width``; autoencoders (``vae``, ``conv-vae``) use ``latent``,
    ``z_dim``, ``hidden[0]`` and ``likelihood`` and reconstruct their input. ``prior`` is a registered
    prior name (see :func:`~infodropout.models.priors.register_prior`) or None for the paper's default;
    ``kl_convention`` is how log-uniform priors charge units that are off (``"exact"`` or ``"authors"``).
    """
    input_shape = tuple(int(s) for s in input_shape)
    kinds = dict(dropout=dropout, p=p, alpha_max=alpha_max, activation=activation)
    common = dict(priors=prior, beta=beta, num_data=num_data, input_shape=input_shape, kl_convention=kl_convention)
    if arch == "mlp":
        encoder = MLPEncoder(_numel(input_shape), hidden, **kinds)
        return InformationBottleneck(encoder, LinearHead(encoder.out_features, num_classes), "categorical", **common)
    if arch == "allcnn32":
        encoder = AllCNN32Encoder(input_shape[0], width, input_dropout=input_dropout, **kinds)
        head = AllCNNHead(encoder.out_channels, num_classes, width)
        return InformationBottleneck(encoder, head, "categorical", **common)
    if arch == "allcnn96":
        encoder = AllCNN96Encoder(input_shape[0], width, **kinds)
        head = AllCNNHead(encoder.out_channels, num_classes, width)
        return InformationBottleneck(encoder, head, "categorical", **common)
    if arch == "vae":
        width_hidden = int(hidden[0])
        encoder = VAEEncoder(_numel(input_shape), width_hidden, z_dim, latent, alpha_max)
        decoder = MLPDecoder(z_dim, width_hidden, input_shape)
        return InformationBottleneck(encoder, decoder, likelihood, reconstruct=True, **common)
    if arch == "conv-vae":
        if input_shape[1:] != (64, 64):
            raise ValueError(f"arch='conv-vae' takes 64x64 images, got input_shape={input_shape}")
        encoder = ConvVAEEncoder(input_shape[0], z_dim, latent, alpha_max)
        return InformationBottleneck(
            encoder, ConvDecoder(z_dim, input_shape[0]), likelihood, reconstruct=True, **common
        )
    raise ValueError(f"arch={arch!r}: expected one of {ARCHITECTURES}")
