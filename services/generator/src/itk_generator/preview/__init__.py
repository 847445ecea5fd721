"""The CPU preview backend (no weights): see backend.py."""

from .backend import PreviewBackend, mouth_box, person_mouth_boxes

__all__ = ["PreviewBackend", "mouth_box", "person_mouth_boxes"]
