"""genfill: train, compare and run generative models that fill holes in images and make new ones."""

__version__ = "0.1.0"
