"""Data: image datasets, the uint8 tensor cache and hole masks."""
