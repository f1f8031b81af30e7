"""discl: DisCL, a synthetic-to-real data curriculum via image-guided diffusion."""

__version__ = "0.1.0"
