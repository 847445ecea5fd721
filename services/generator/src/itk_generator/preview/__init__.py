"""The CPU preview backend (no weights): see backend.py."""

from .backend import PreviewBackend, mouth_box

__all__ = ["PreviewBackend", "mouth_box"]
