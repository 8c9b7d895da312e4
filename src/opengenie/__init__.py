"""opengenie: Genie (Bruce et al., 2024) in PyTorch."""

__version__ = "0.1.0"
