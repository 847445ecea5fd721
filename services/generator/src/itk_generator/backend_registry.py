"""Backend registry: a name (GENERATOR_BACKEND) -> a factory building that backend from the environment.

Factories import their backend lazily, so the preview never imports torch.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from .backend import Backend

DEFAULT_BACKEND = "preview"


class UnknownBackendError(ValueError):
    """GENERATOR_BACKEND names no registered backend."""


def _from_class(target: str) -> Callable[[], Backend]:
    """A factory for "module:Class": `Class.from_env()` when the class has it, else `Class()`."""

    def build() -> Backend:
        module_name, class_name = target.split(":")
        backend_class = getattr(importlib.import_module(module_name), class_name)
        from_env = getattr(backend_class, "from_env", None)
        return from_env() if callable(from_env) else backend_class()

    return build


BACKENDS: dict[str, Callable[[], Backend]] = {
    "preview": _from_class("itk_generator.preview:PreviewBackend"),
    "infinitetalk": _from_class("itk_generator.infinitetalk.backend:InfiniteTalkBackend"),
    "runpod": _from_class("itk_generator.providers.runpod:RunPodBackend"),
    "beam": _from_class("itk_generator.providers.beam:BeamBackend"),
    "modal": _from_class("itk_generator.providers.modal:ModalBackend"),
}


def create_backend(name: str) -> Backend:
    """Build the named backend (not loaded yet: the service calls `load()` in the background)."""
    factory = BACKENDS.get(name.strip().lower())
    if factory is None:
        known = ", ".join(sorted(BACKENDS))
        raise UnknownBackendError(f"unknown GENERATOR_BACKEND {name!r}; known backends: {known}")
    return factory()
