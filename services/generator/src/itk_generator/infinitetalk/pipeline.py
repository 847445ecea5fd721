"""One piece of talking video, generated the way InfiniteTalk's streaming mode does it.

A piece is a run of clips of `clip_frames` frames (81). A lane's first piece starts from the
reference image alone, and its first clip contributes all its frames; every later clip starts
`motion_frames` (9) frames before the first frame it adds: those frames, decoded (and colour
corrected) from the previous clip, are VAE-encoded into the clip's first latent frames and kept
clean during sampling, and the clip's audio window covers them too. Each clip adds
`clip_frames - motion_frames` new frames; the last clip is cut so the piece has exactly the
requested number of frames. A later piece of a lane is given the previous piece's last motion
frames and starts with such a continuing clip, so a lane cut into pieces on the clip grid renders
the same frames as the unbroken stream:
- motion frames are rounded to float16 (`itk_common.motion`) at every clip boundary, inside a
  piece as between pieces, so both paths see identical values;
- each clip's noise comes from (seed, lane, the clip's first frame in the lane), not from a
  generator running through the piece;
- the audio features are computed with the neighbouring audio on both sides of the piece
  (`context_audio`), so the 5-frame audio windows at a cut see real audio, not a clamped edge.

Every clip sees the same text embeddings, CLIP image tokens and conditioning latent `y` (the
reference image followed by black frames, with a mask marking the first latent frame); those
are computed once per image and prompt and kept for the job's other pieces. Video mode (dubbing),
as the reference does it: each clip's reference image is the source video's frame at the clip's
first frame, so its CLIP tokens and `y` are computed per clip, while the motion frames still come
from the previous clip.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch

from itk_common.catalogue import CLIP_FRAMES, MOTION_FRAMES, check_clip_layout
from itk_common.constants import SAMPLES_PER_FRAME
from itk_common.motion import to_motion

from .denoiser import ClipConditioning, ClipDenoising, Denoiser, LocalDenoiser
from .dit import InfiniteTalkDiT
from .person_regions import latent_masks
from .sampling import SamplingPlan

# The reference's default negative prompt for InfiniteTalk (its "infinitetalk-14B" config).
DEFAULT_NEGATIVE_PROMPT = (
    "bright tones, overexposed, static, blurred details, subtitles, style, works, paintings, images, static, "
    "overall gray, worst quality, low quality, JPEG compression residue, ugly, incomplete, extra fingers, "
    "poorly drawn hands, poorly drawn faces, deformed, disfigured, misshapen limbs, fused fingers, still picture, "
    "messy background, three legs, many people in the background, walking backwards"
)

log = logging.getLogger(__name__)


class VideoAutoencoder(Protocol):
    def encode(self, video: torch.Tensor) -> torch.Tensor: ...
    def decode(self, latents: torch.Tensor) -> torch.Tensor: ...


class ImageEncoder(Protocol):
    def encode(self, images: torch.Tensor) -> torch.Tensor: ...


class PromptEncoder(Protocol):
    def encode(self, prompts: list[str]) -> list[torch.Tensor]: ...


class AudioEncoder(Protocol):
    def embed(self, samples_16k: np.ndarray, num_frames: int) -> torch.Tensor: ...


@dataclass(frozen=True)
class ClipSpan:
    index: int
    first_frame: int  # chunk frame index of the clip's first frame (motion frames included)
    keep_from: int  # frames of the decoded clip before this one repeat the previous clip


def plan_clips(frame_count: int, clip_frames: int = CLIP_FRAMES, motion_frames: int = MOTION_FRAMES,
               continued: bool = False) -> list[ClipSpan]:
    """The clips covering `frame_count` frames: 81, then 72 new frames per clip (defaults).

    A `continued` piece (one given the previous piece's motion frames) starts with a continuing
    clip: its first clip begins `motion_frames` before the piece, and every clip adds 72 frames.
    """
    if frame_count < 1:
        raise ValueError(f"frame_count must be positive, got {frame_count}")
    check_clip_layout(clip_frames, motion_frames)
    stride = clip_frames - motion_frames
    if continued:
        count = math.ceil(frame_count / stride)
        return [ClipSpan(index=k, first_frame=k * stride - motion_frames, keep_from=motion_frames)
                for k in range(count)]
    count = 1 + math.ceil(max(0, frame_count - clip_frames) / stride)
    return [ClipSpan(index=k, first_frame=k * stride, keep_from=0 if k == 0 else motion_frames) for k in range(count)]


def clip_noise(seed: int, lane: int, lane_frame: int, shape: tuple[int, ...]) -> torch.Tensor:
    """The starting noise of the clip that begins at `lane_frame` of lane `lane`: float32 on the CPU.

    Derived from the three numbers alone (numpy's SeedSequence mixes them into a torch seed), so
    no two clips of a job share their noise and a lane renders the same however it is cut.
    """
    state = np.random.SeedSequence([seed, lane, lane_frame]).generate_state(1, dtype=np.uint64)[0]
    return torch.randn(shape, generator=torch.Generator().manual_seed(int(state)), dtype=torch.float32)


def extend_audio_embedding(embedding: torch.Tensor, needed_frames: int) -> torch.Tensor:
    """Cover `needed_frames` frames: like the reference, append the last (missing + 3) frames
    mirrored; windows past even that end are clamped to the last frame."""
    missing = needed_frames - embedding.shape[0]
    if missing < 0:
        # Real audio past the last window (a piece's context, or a short last clip): nothing to add.
        # Like the reference, a last clip ending exactly at the audio's end still gets 3 mirrored frames.
        return embedding
    return torch.cat([embedding, torch.flip(embedding[-(missing + 3):], dims=[0])])


def audio_windows(embedding: torch.Tensor, first_frame: int, clip_frames: int, window: int = 5) -> torch.Tensor:
    """[L, layers, C] -> [clip_frames, window, layers, C]: each frame's neighbours -2..+2, clamped."""
    centres = torch.arange(first_frame, first_frame + clip_frames)[:, None]
    offsets = torch.arange(window)[None, :] - window // 2
    return embedding[(centres + offsets).clamp(0, embedding.shape[0] - 1)]


def first_frame_mask(latent_frames: int, height: int, width: int) -> torch.Tensor:
    """[4, T, h, w]: ones on the first latent frame (the conditioning image), zeros after."""
    mask = torch.zeros(4, latent_frames, height, width)
    mask[:, 0] = 1.0
    return mask


def pad_text(states: torch.Tensor, text_len: int) -> torch.Tensor:
    """[len, dim] -> [text_len, dim], zero-padded (longer prompts are cut, as the tokenizer does)."""
    states = states[:text_len]
    return torch.cat([states, states.new_zeros(text_len - states.shape[0], states.shape[1])])


def image_to_tensor(rgb: np.ndarray) -> torch.Tensor:
    """[H, W, 3] uint8 -> [1, 3, H, W] float in [-1, 1]."""
    return torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 127.5 - 1.0


def video_to_frames(video: torch.Tensor) -> np.ndarray:
    """[3, T, H, W] in [-1, 1] -> [T, H, W, 3] uint8."""
    scaled = ((video.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return scaled.permute(1, 2, 3, 0).cpu().numpy()


# sRGB (D65) <-> CIE Lab, the standard formulae with the constants scikit-image uses, which the
# reference's colour correction calls; computed in float64 so the statistics are exact.
_XYZ_FROM_RGB = ((0.412453, 0.357580, 0.180423), (0.212671, 0.715160, 0.072169), (0.019334, 0.119193, 0.950227))
_D65_WHITE = (0.95047, 1.0, 1.08883)


def rgb_to_lab(rgb: torch.Tensor) -> torch.Tensor:
    """[..., 3] sRGB in [0, 1] -> [..., 3] Lab."""
    matrix = torch.tensor(_XYZ_FROM_RGB, dtype=rgb.dtype, device=rgb.device)
    white = torch.tensor(_D65_WHITE, dtype=rgb.dtype, device=rgb.device)
    linear = torch.where(rgb > 0.04045, ((rgb + 0.055) / 1.055) ** 2.4, rgb / 12.92)
    xyz = linear @ matrix.T / white
    f = torch.where(xyz > 0.008856, xyz.clamp(min=0) ** (1 / 3), 7.787 * xyz + 16 / 116)
    return torch.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], dim=-1)


def lab_to_rgb(lab: torch.Tensor) -> torch.Tensor:
    """[..., 3] Lab -> [..., 3] sRGB clipped to [0, 1] (negative z clipped to 0 first, as scikit-image does)."""
    matrix = torch.linalg.inv(torch.tensor(_XYZ_FROM_RGB, dtype=lab.dtype, device=lab.device))
    white = torch.tensor(_D65_WHITE, dtype=lab.dtype, device=lab.device)
    fy = (lab[..., 0] + 16) / 116
    f = torch.stack([lab[..., 1] / 500 + fy, fy, (fy - lab[..., 2] / 200).clamp(min=0)], dim=-1)
    xyz = torch.where(f > 0.2068966, f**3, (f - 16 / 116) / 7.787) * white
    linear = xyz @ matrix.T
    rgb = torch.where(linear > 0.0031308, 1.055 * linear.clamp(min=0) ** (1 / 2.4) - 0.055, 12.92 * linear)
    return rgb.clamp(0, 1)


def match_colors_video(video: torch.Tensor, reference: np.ndarray, strength: float = 1.0) -> torch.Tensor:
    """The reference's colour correction of a decoded clip [3, T, H, W] in [-1, 1] toward the image.

    Per frame, each Lab channel's mean and standard deviation are moved to the reference image's
    (a flat channel takes the image's mean), and the result is blended with the frame by
    `strength`. Returns [3, T, H, W] float32 in [-1, 1], on the video's device.
    """
    if strength <= 0:
        return video
    source = ((video.double() + 1) / 2).clamp(0, 1).permute(1, 2, 3, 0)  # [T, H, W, 3]
    reference_lab = rgb_to_lab(torch.from_numpy(reference).to(source.device, torch.float64) / 255).reshape(-1, 3)
    ref_mean, ref_std = reference_lab.mean(dim=0), reference_lab.std(dim=0, unbiased=False)
    lab = rgb_to_lab(source)
    flat = lab.reshape(lab.shape[0], -1, 3)
    mean, std = flat.mean(dim=1, keepdim=True), flat.std(dim=1, unbiased=False, keepdim=True)
    moved = torch.where(std == 0, ref_mean, (flat - mean) * (ref_std / torch.where(std == 0, 1.0, std)) + ref_mean)
    corrected = lab_to_rgb(moved.reshape(lab.shape))
    blended = (1 - strength) * source + strength * corrected
    return (blended * 2 - 1).permute(3, 0, 1, 2).float()


def match_colors(frames: np.ndarray, reference: np.ndarray, strength: float = 1.0) -> np.ndarray:
    """`match_colors_video` for uint8 frames [T, H, W, 3]; uint8 frames back."""
    if strength <= 0:
        return frames
    video = torch.from_numpy(frames).permute(3, 0, 1, 2).float() / 127.5 - 1
    return video_to_frames(match_colors_video(video, reference, strength))


@dataclass(frozen=True)
class ChunkRequest:
    image: np.ndarray  # [H, W, 3] uint8, already fitted to the generated size
    # float32 16 kHz samples of this chunk: mono, or [persons, samples] (one track per person)
    audio: np.ndarray
    frame_count: int
    prompt: str
    seed: int
    plan: SamplingPlan
    motion_frames: int = MOTION_FRAMES
    color_correction: float = 0.0
    negative_prompt: str = DEFAULT_NEGATIVE_PROMPT
    teacache_coefficients: tuple[float, ...] | None = None
    # Video mode: the source frame ([H, W, 3] uint8 at the generated size) shown at a chunk frame
    # index; called with increasing indices, once per clip. None: `image` for every clip.
    reference_frame: Callable[[int], np.ndarray] | None = None
    # Lanes: which stream this piece belongs to and where it starts in it (frames).
    lane: int = 0
    lane_first_frame: int = 0
    # The previous piece's last frames (float16 [>= motion_frames, H, W, 3] in [-1, 1] at the
    # generated size), or None for a lane's first piece.
    motion: np.ndarray | None = None
    # The piece's audio with neighbouring audio around it; `audio` starts `context_before`
    # samples into it (a multiple of 640). None: no context.
    context_audio: np.ndarray | None = None  # mono, or [persons, samples] like `audio`
    context_before: int = 0
    # Several persons: each one's region, then the background, at the generated size
    # ([persons + 1, H, W], person_regions.py); None for one person.
    person_masks: torch.Tensor | None = None

    @property
    def persons(self) -> int:
        return self.audio.shape[0] if self.audio.ndim == 2 else 1


@dataclass(frozen=True)
class StepReport:
    step: int  # 1-based over the whole chunk
    total_steps: int
    frames_done: int


class InfiniteTalkPipeline:
    """The loaded models and the chunk loop; `generate` yields the chunk's frames clip by clip."""

    def __init__(
        self,
        dit: InfiniteTalkDiT,
        vae: VideoAutoencoder,
        clip: ImageEncoder,
        text_encoder: PromptEncoder,
        audio_encoder: AudioEncoder,
        device: torch.device | str = "cpu",
        clip_frames: int = CLIP_FRAMES,
        text_cache_size: int = 8,
        batch_guidance: bool = False,
        image_cache_size: int = 4,
    ) -> None:
        self.dit = dit
        self.vae = vae
        self.clip = clip
        self.text_encoder = text_encoder
        self.audio_encoder = audio_encoder
        self.device = torch.device(device)
        self.clip_frames = clip_frames
        self.text_cache_size = text_cache_size
        # Run a step's guidance forwards as one batched forward (GUIDANCE_BATCH).
        self.batch_guidance = batch_guidance
        self._text_cache: dict[str, torch.Tensor] = {}
        # Runs each clip's sampling schedule; parallel.ParallelGroup.attach spreads it over devices.
        self.denoiser: Denoiser = LocalDenoiser(dit)
        self.image_cache_size = image_cache_size
        self._image_cache: OrderedDict[str, tuple[torch.Tensor, torch.Tensor]] = OrderedDict()

    def encode_prompt(self, prompt: str) -> torch.Tensor:
        """[1, text_len, text_dim] in the DiT's dtype; cached, since every chunk of a job repeats it."""
        cached = self._text_cache.get(prompt)
        if cached is None:
            started = time.monotonic()
            (states,) = self.text_encoder.encode([prompt])
            cached = pad_text(states.float().cpu(), self.dit.config.text_len)[None]
            # Paid once per prompt (and per portrait below): bench/gpu_service.py tells it from compiling.
            log.info("prompt encoded in %.3f s", time.monotonic() - started)
            if len(self._text_cache) >= self.text_cache_size:
                self._text_cache.pop(next(iter(self._text_cache)))
            self._text_cache[prompt] = cached
        return cached.to(self.device, self.dit.patch_embedding.weight.dtype)

    def encode_image(self, image: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """(CLIP tokens, conditioning latent y) of a fitted image; cached, since every piece of a job
        shares its image (the CLIP forward and the VAE encode of a whole clip are skipped)."""
        key = hashlib.sha256(np.ascontiguousarray(image).tobytes() + repr((image.shape, self.clip_frames)).encode())
        cached = self._image_cache.get(key.hexdigest())
        if cached is None:
            started = time.monotonic()
            height, width = image.shape[:2]
            latent_frames = (self.clip_frames - 1) // 4 + 1
            tensor = image_to_tensor(image).to(self.device)
            clip_features = self.clip.encode(tensor).float().cpu()
            padded = torch.cat([tensor[:, :, None], tensor.new_zeros(1, 3, self.clip_frames - 1, height, width)], dim=2)
            condition_latent = self.vae.encode(padded)[0].float().cpu()
            condition = torch.cat([first_frame_mask(latent_frames, height // 8, width // 8), condition_latent])[None]
            cached = (clip_features, condition)
            log.info("image encoded in %.3f s", time.monotonic() - started)
            if len(self._image_cache) >= self.image_cache_size:
                self._image_cache.popitem(last=False)
            self._image_cache[key.hexdigest()] = cached
        dtype = self.dit.patch_embedding.weight.dtype
        return cached[0].to(self.device, dtype), cached[1].to(self.device, dtype)

    def audio_features(self, request: ChunkRequest, clips: list[ClipSpan]) -> tuple[list[torch.Tensor], int]:
        """Per-frame features [F, layers, C] of every person's track around the piece, and the
        index of the piece's first frame.

        With context, the features are those of the context audio (the piece's frames start
        `context_before / 640` rows in); windows before the recording's start are clamped and
        past its end mirrored, as the reference does at a stream's ends (for each track).
        """
        if request.context_audio is None:
            samples, offset = request.audio, 0
            frames = request.frame_count
        else:
            samples, offset = request.context_audio, request.context_before // SAMPLES_PER_FRAME
            frames = -(-samples.shape[-1] // SAMPLES_PER_FRAME)
        needed = offset + clips[-1].first_frame + self.clip_frames
        tracks = samples[None] if samples.ndim == 1 else samples
        return [extend_audio_embedding(self.audio_encoder.embed(track, frames).float().cpu(), needed)
                for track in tracks], offset

    def clip_audio(self, features: list[torch.Tensor], first_frame: int) -> torch.Tensor:
        """The DiT's audio windows of one clip: [1, frames, W, L, C] for one person, else
        [1, persons, frames, W, L, C]."""
        window = self.dit.config.audio_window
        per_person = [audio_windows(track, first_frame, self.clip_frames, window) for track in features]
        audio = per_person[0][None] if len(per_person) == 1 else torch.stack(per_person)[None]
        return audio.to(self.device, self.dit.patch_embedding.weight.dtype)

    @torch.no_grad()
    def generate(self, request: ChunkRequest, on_step: Callable[[StepReport], None] = lambda _r: None,
                 on_motion: Callable[[np.ndarray], None] = lambda _m: None) -> Iterator[np.ndarray]:
        """Yield uint8 frames [n, H, W, 3] per clip; exactly `frame_count` frames in all.

        At the end `on_motion` receives the piece's last `motion_frames` frames (float16, the
        motion format) for the next piece of the lane.
        """
        continued = request.motion is not None
        clips = plan_clips(request.frame_count, self.clip_frames, request.motion_frames, continued)
        config = self.dit.config
        height, width = request.image.shape[:2]
        latent_frames = (self.clip_frames - 1) // 4 + 1
        latent_h, latent_w = height // 8, width // 8

        text = self.encode_prompt(request.prompt)
        negative = self.encode_prompt(request.negative_prompt)
        clip_features, condition = self.encode_image(request.image)
        features, audio_offset = self.audio_features(request, clips)
        masks = None
        if request.persons > 1:
            if request.person_masks is None:
                raise ValueError(f"{request.persons} audio tracks need person masks")
            masks = latent_masks(request.person_masks, latent_h, latent_w).to(self.device)

        total_steps = request.plan.steps * len(clips)
        frames_done = 0
        if request.motion is not None:
            motion_source = motion_to_tensor(request.motion[-request.motion_frames:]).to(self.device)
        else:
            motion_source = image_to_tensor(request.image).to(self.device)[:, :, None]
        tail: np.ndarray | None = None  # the last motion frames kept so far, float16
        for span in clips:
            if request.reference_frame is not None and (span.index > 0 or continued):
                # A continued piece's first clip starts before the piece: its nearest own frame.
                clip_features, condition = self.encode_image(request.reference_frame(max(0, span.first_frame)))
            audio = self.clip_audio(features, audio_offset + span.first_frame)
            conditioning = ClipConditioning(text, negative, clip_features, condition, audio, masks)
            motion_latent = self.vae.encode(motion_source)[0].to(self.device, torch.float32)
            noise = clip_noise(request.seed, request.lane, request.lane_first_frame + span.first_frame,
                               (config.out_dim, latent_frames, latent_h, latent_w))
            steps_before = span.index * request.plan.steps

            def report(step: int, steps_before: int = steps_before, frames_done: int = frames_done) -> None:
                on_step(StepReport(steps_before + step + 1, total_steps, frames_done))

            latent = self.denoiser(ClipDenoising(conditioning, noise.to(self.device), motion_latent, request.plan,
                                                 request.teacache_coefficients, self.batch_guidance), report)
            video = self.vae.decode(latent[None])[0].float().clamp(-1, 1)  # [3, clip_frames, H, W]
            video = match_colors_video(video, request.image, request.color_correction)
            frames = video_to_frames(video)
            # The next clip starts from these frames exactly as the next piece would receive them.
            motion = to_motion(video[:, -request.motion_frames:].permute(1, 2, 3, 0).cpu().numpy())
            motion_source = motion_to_tensor(motion).to(self.device)
            keep = slice(span.keep_from, span.keep_from + request.frame_count - frames_done)
            new_frames = frames[keep]
            kept_motion = to_motion(video[:, keep].permute(1, 2, 3, 0).cpu().numpy())
            tail = kept_motion if tail is None else np.concatenate([tail, kept_motion])
            tail = tail[-request.motion_frames:]
            frames_done += len(new_frames)
            yield new_frames
        assert tail is not None
        on_motion(tail)


def motion_to_tensor(motion: np.ndarray) -> torch.Tensor:
    """Motion frames [T, H, W, 3] (float16 in [-1, 1]) -> [1, 3, T, H, W] float32."""
    return torch.from_numpy(motion.astype(np.float32)).permute(3, 0, 1, 2)[None]
