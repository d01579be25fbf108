"""p: priors, KLs, heads."""
