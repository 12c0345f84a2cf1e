"""Command lines: `python -m scripts.plan`, and later scripts.pki and scripts.ops."""
