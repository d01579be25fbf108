"""q: noisy layers and encoders."""
