"""The InfiniteTalk model: DiT, audio adapter, sampling and the generator backend built on them."""

from .config import DiTConfig
from .dit import InfiniteTalkDiT

__all__ = ["DiTConfig", "InfiniteTalkDiT"]
