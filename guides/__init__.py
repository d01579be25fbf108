"""q: what the guide says. The multiplicative log-normal noise of Information Dropout, the noisy
layers built on it (and their Gaussian and binary dropout siblings), and the encoders of the paper's
experiments. This package imports nothing else of the project."""

from .encoders import AllCNN32Encoder, AllCNN96Encoder, ConvVAEEncoder, MLPEncoder, VAEEncoder
from .layers import (
    KINDS,
    BinaryDropout,
    Deterministic,
    GaussianDropout,
    GaussianLatent,
    InformationDropout,
    NoisyLayer,
    noisy_conv2d,
    noisy_linear,
    sampling,
)
from .noise import MultiplicativeLogNormal, drawing

__all__ = [
    "KINDS",
    "AllCNN32Encoder",
    "AllCNN96Encoder",
    "BinaryDropout",
    "ConvVAEEncoder",
    "Deterministic",
    "GaussianDropout",
    "GaussianLatent",
    "InformationDropout",
    "MLPEncoder",
    "MultiplicativeLogNormal",
    "NoisyLayer",
    "VAEEncoder",
    "drawing",
    "noisy_conv2d",
    "noisy_linear",
    "sampling",
]
