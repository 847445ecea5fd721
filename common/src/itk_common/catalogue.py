"""What a job can ask a generator for, defined once: the presets, the clip grid, the resolution buckets.

Every service reads these from here: the gateway validates jobs and plans lanes with them, the
splitter cuts pieces on the clip grid, the generators sample with the presets and report in their
`GeneratorInfo` which of them they serve, and the client and the web page list the presets.

Presets (InfiniteTalk's sampling plans; steps x forwards per step is the DiT work of a clip):
- quality: the reference's defaults, 40 steps of 3 forwards (text and audio guidance).
- fast: for step-distilled weights (a LoRA such as FusioniX), 8 steps of 2 forwards.
- turbo: for step- and guidance-distilled weights (LightX2V's 4-step Wan2.1 I2V), 4 steps of 1.

The clip grid: InfiniteTalk renders a stream in clips of 81 frames; every clip after the first
starts from the last 9 frames before it, so it adds 72 new frames. A piece inside a lane is cut
on that grid, which gateway and generators must therefore agree on.

Resolution buckets: the job's `resolution` picks a family (480p: about 640x640 pixels, 720p:
about 960x960), and within it the bucket whose height/width ratio is closest to the request's,
as in the reference's ASPECT_RATIO_627 / ASPECT_RATIO_960 tables.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Preset:
    """A sampling plan's numbers; the generator's sampler turns them into its schedule."""

    name: str
    steps: int
    text_guidance: float
    audio_guidance: float
    # Timestep shift per resolution family.
    shift: dict[str, float]
    # True: timesteps 1000 * (1 - i/steps), as step-distilled weights were trained on; False:
    # the reference's linspace(1000, 1, steps).
    linear_to_zero: bool = False
    summary: str = ""

    @property
    def forwards_per_step(self) -> int:
        if self.text_guidance == 1.0 and self.audio_guidance == 1.0:
            return 1
        return 2 if self.text_guidance == 1.0 else 3

    @property
    def label(self) -> str:
        """How the page and the CLI show it: `fast (8 steps)`."""
        return f"{self.name} ({self.steps} steps)"


PRESETS: dict[str, Preset] = {
    "quality": Preset("quality", 40, 5.0, 4.0, {"480p": 7.0, "720p": 11.0},
                      summary="the reference's defaults: 40 steps, text and audio guidance"),
    "fast": Preset("fast", 8, 1.0, 2.0, {"480p": 2.0, "720p": 2.0},
                   summary="step-distilled weights (FusioniX LoRA): 8 steps of 2 forwards"),
    "turbo": Preset("turbo", 4, 1.0, 1.0, {"480p": 5.0, "720p": 5.0}, linear_to_zero=True,
                    summary="step- and guidance-distilled weights (LightX2V): 4 steps of 1 forward"),
}
PRESET_NAMES: tuple[str, ...] = tuple(PRESETS)
DEFAULT_PRESET = "quality"


def preset(name: str) -> Preset:
    """The preset called `name` ("" = the default); ValueError naming the known ones otherwise."""
    found = PRESETS.get((name or DEFAULT_PRESET).strip().lower())
    if found is None:
        raise ValueError(f"unknown preset {name!r}; known presets: {', '.join(PRESET_NAMES)}")
    return found


@dataclass(frozen=True)
class ClipGrid:
    """Frames per clip and motion frames (the frames a clip continues from)."""

    clip_frames: int
    motion_frames: int

    def __post_init__(self) -> None:
        check_clip_layout(self.clip_frames, self.motion_frames)

    @property
    def stride(self) -> int:
        """New frames each clip after the first adds."""
        return self.clip_frames - self.motion_frames

    def __str__(self) -> str:
        return f"{self.clip_frames}-frame clips continuing from {self.motion_frames} motion frames"


def check_clip_layout(clip_frames: int, motion_frames: int) -> None:
    """Clips and motion frames the video VAE can encode: 4n+1 frames each, fewer motion frames than
    a clip has. ValueError saying what is wrong otherwise."""
    if clip_frames < 5 or (clip_frames - 1) % 4:
        raise ValueError(f"clip frames must be 4n+1 and at least 5 (81, 21, ...), got {clip_frames}")
    if motion_frames < 1 or (motion_frames - 1) % 4 or motion_frames >= clip_frames:
        raise ValueError(f"motion frames must be 4n+1 and fewer than the {clip_frames} clip frames, "
                         f"got {motion_frames}")


CLIP_FRAMES = 81
MOTION_FRAMES = 9
INFINITETALK_GRID = ClipGrid(CLIP_FRAMES, MOTION_FRAMES)

# height/width ratio -> (height, width) for each resolution family.
BUCKETS: dict[str, dict[float, tuple[int, int]]] = {
    "480p": {
        0.26: (320, 1216), 0.38: (384, 1024), 0.50: (448, 896), 0.67: (512, 768), 0.82: (576, 704),
        1.00: (640, 640), 1.22: (704, 576), 1.50: (768, 512), 1.86: (832, 448), 2.00: (896, 448),
        2.50: (960, 384), 2.83: (1088, 384), 3.60: (1152, 320), 3.80: (1216, 320), 4.00: (1280, 320),
    },
    "720p": {
        0.22: (448, 2048), 0.29: (512, 1792), 0.36: (576, 1600), 0.45: (640, 1408), 0.55: (704, 1280),
        0.63: (768, 1216), 0.76: (832, 1088), 0.88: (896, 1024), 1.00: (960, 960), 1.14: (1024, 896),
        1.31: (1088, 832), 1.50: (1152, 768), 1.58: (1216, 768), 1.82: (1280, 704), 1.91: (1344, 704),
        2.20: (1408, 640), 2.30: (1472, 640), 2.67: (1536, 576), 2.89: (1664, 576), 3.62: (1856, 512),
        3.75: (1920, 512),
    },
}
RESOLUTIONS: tuple[str, ...] = tuple(BUCKETS)
DEFAULT_RESOLUTION = "480p"
# Other names for the families that clients send (the reference's model names among them).
RESOLUTION_ALIASES = {"": DEFAULT_RESOLUTION, "480": "480p", "720": "720p",
                      "infinitetalk-480": "480p", "infinitetalk-720": "720p"}


def resolution_family(name: str) -> str:
    """The family `name` means ("" = 480p); ValueError naming the known ones otherwise."""
    cleaned = (name or "").strip().lower()
    family = RESOLUTION_ALIASES.get(cleaned, cleaned)
    if family not in BUCKETS:
        raise ValueError(f"unknown resolution {name!r}; use one of {', '.join(RESOLUTIONS)}")
    return family


def choose_bucket(height: int, width: int, resolution: str = DEFAULT_RESOLUTION,
                  buckets: dict[str, dict[float, tuple[int, int]]] = BUCKETS) -> tuple[int, int]:
    """(height, width) of the bucket whose ratio is closest to height/width (first one on ties)."""
    if resolution not in buckets:
        raise ValueError(f"unknown resolution {resolution!r}; known: {', '.join(buckets)}")
    if height <= 0 or width <= 0:
        raise ValueError(f"size must be positive, got {width}x{height}")
    ratio = height / width
    family = buckets[resolution]
    closest = min(family, key=lambda key: abs(key - ratio))
    return family[closest]


def parse_bucket(text: str) -> tuple[str, int, int]:
    """`480p:832x480` (family:WIDTHxHEIGHT) -> ("480p", 832, 480); ValueError when malformed."""
    family, sep, size = text.strip().partition(":")
    try:
        width, height = (int(part) for part in size.lower().split("x"))
    except ValueError:
        raise ValueError(f"bucket {text!r} must look like 480p:832x480") from None
    if not sep:
        raise ValueError(f"bucket {text!r} must look like 480p:832x480")
    return resolution_family(family), width, height
