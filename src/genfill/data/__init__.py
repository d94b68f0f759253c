"""Data: image sources (folder, CelebA, built-in faces) and the uint8 cache (masks are `genfill.masks`)."""
