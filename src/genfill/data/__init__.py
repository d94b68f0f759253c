"""Data: image sources (folder, CelebA, built-in faces), the uint8 cache, and masks."""
