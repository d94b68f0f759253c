"""genfill: train, compare and run generative models that fill holes in images and make new ones.

    import genfill
    painter = genfill.load("runs/vae-faces64")   # a run, a checkpoint, an exported folder, or "telea"
    filled = painter.fill("photo.jpg", "photo_mask.png")
"""

__version__ = "0.1.0"
__all__ = ["load", "Inpainter", "GenfillError"]

from genfill.errors import GenfillError


def __getattr__(name: str):
    # Lazy: `import genfill` stays cheap (the CLI parses its arguments before torch is imported).
    if name in ("load", "Inpainter"):
        from genfill import api

        return getattr(api, name)
    raise AttributeError(f"module 'genfill' has no attribute {name!r}")
