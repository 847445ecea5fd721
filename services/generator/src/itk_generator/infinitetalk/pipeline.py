"""One chunk of talking video, generated the way InfiniteTalk's streaming mode does it.

The chunk is a run of clips of `clip_frames` frames (81). The first clip is conditioned on the
reference image alone and contributes all its frames; every later clip starts `motion_frames`
(9) frames before the first frame it adds: those frames, decoded from the previous clip, are
VAE-encoded into the clip's first latent frames and kept clean during sampling, and the clip's
audio window covers them too. Each clip adds `clip_frames - motion_frames` new frames; the
last clip is cut so the chunk has exactly the requested number of frames.

Every clip sees the same text embeddings, CLIP image tokens and conditioning latent `y` (the
reference image followed by black frames, with a mask marking the first latent frame), so
those are computed once per chunk. Video mode (dubbing), as the reference does it: each clip's
reference image is the source video's frame at the clip's first frame, so its CLIP tokens and
`y` are computed per clip, while the motion frames still come from the previous clip.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol

import cv2
import numpy as np
import torch

from .denoiser import ClipConditioning, ClipDenoising, Denoiser, LocalDenoiser
from .dit import InfiniteTalkDiT
from .sampling import SamplingPlan

# The reference's default negative prompt for InfiniteTalk (its "infinitetalk-14B" config).
DEFAULT_NEGATIVE_PROMPT = (
    "bright tones, overexposed, static, blurred details, subtitles, style, works, paintings, images, static, "
    "overall gray, worst quality, low quality, JPEG compression residue, ugly, incomplete, extra fingers, "
    "poorly drawn hands, poorly drawn faces, deformed, disfigured, misshapen limbs, fused fingers, still picture, "
    "messy background, three legs, many people in the background, walking backwards"
)


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


def plan_clips(frame_count: int, clip_frames: int = 81, motion_frames: int = 9) -> list[ClipSpan]:
    """The clips covering `frame_count` frames: 81, then 72 new frames per clip (defaults)."""
    if frame_count < 1:
        raise ValueError(f"frame_count must be positive, got {frame_count}")
    validate_clip_layout(clip_frames, motion_frames)
    stride = clip_frames - motion_frames
    count = 1 + math.ceil(max(0, frame_count - clip_frames) / stride)
    return [ClipSpan(index=k, first_frame=k * stride, keep_from=0 if k == 0 else motion_frames) for k in range(count)]


def validate_clip_layout(clip_frames: int, motion_frames: int) -> None:
    if clip_frames < 5 or (clip_frames - 1) % 4:
        raise ValueError(f"clip_frames must be 4n+1 (n >= 1), got {clip_frames}")
    if motion_frames < 1 or (motion_frames - 1) % 4 or motion_frames >= clip_frames:
        raise ValueError(
            f"motion_frames must be 4n+1 and smaller than clip_frames ({clip_frames}), got {motion_frames}")


def extend_audio_embedding(embedding: torch.Tensor, needed_frames: int) -> torch.Tensor:
    """Cover `needed_frames` frames: like the reference, append the last (missing + 3) frames
    mirrored; windows past even that end are clamped to the last frame."""
    missing = needed_frames - embedding.shape[0]
    if missing <= 0:
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


def image_to_tensor_video(frames: np.ndarray) -> torch.Tensor:
    """[T, H, W, 3] uint8 -> [1, 3, T, H, W] in [-1, 1]."""
    return torch.from_numpy(frames).permute(3, 0, 1, 2)[None].float() / 127.5 - 1.0


def video_to_frames(video: torch.Tensor) -> np.ndarray:
    """[3, T, H, W] in [-1, 1] -> [T, H, W, 3] uint8."""
    scaled = ((video.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return scaled.permute(1, 2, 3, 0).cpu().numpy()


def match_colors(frames: np.ndarray, reference: np.ndarray, strength: float = 1.0) -> np.ndarray:
    """Per frame, move each Lab channel's mean and std to the reference image's; blend by `strength`.

    The reference implementation's colour correction (skimage Lab; here OpenCV's sRGB Lab).
    """
    if strength <= 0:
        return frames
    reference_lab = cv2.cvtColor(reference.astype(np.float32) / 255.0, cv2.COLOR_RGB2Lab)
    ref_mean = reference_lab.reshape(-1, 3).mean(axis=0)
    ref_std = reference_lab.reshape(-1, 3).std(axis=0)
    corrected = np.empty_like(frames)
    for index, frame in enumerate(frames):
        source = frame.astype(np.float32) / 255.0
        lab = cv2.cvtColor(source, cv2.COLOR_RGB2Lab).reshape(-1, 3)
        mean, std = lab.mean(axis=0), lab.std(axis=0)
        safe_std = np.where(std == 0, 1.0, std)
        moved = np.where(std == 0, ref_mean, (lab - mean) * (ref_std / safe_std) + ref_mean)
        rgb = np.clip(cv2.cvtColor(moved.reshape(frame.shape).astype(np.float32), cv2.COLOR_Lab2RGB), 0, 1)
        blended = (1 - strength) * source + strength * rgb
        corrected[index] = np.clip(np.round(blended * 255.0), 0, 255).astype(np.uint8)
    return corrected


@dataclass(frozen=True)
class ChunkRequest:
    image: np.ndarray  # [H, W, 3] uint8, already fitted to the generated size
    audio: np.ndarray  # float32 mono 16 kHz samples of this chunk
    frame_count: int
    prompt: str
    seed: int
    plan: SamplingPlan
    motion_frames: int = 9
    color_correction: float = 0.0
    negative_prompt: str = DEFAULT_NEGATIVE_PROMPT
    teacache_coefficients: tuple[float, ...] | None = None
    # Video mode: the source frame ([H, W, 3] uint8 at the generated size) shown at a chunk frame
    # index; called with increasing indices, once per clip. None: `image` for every clip.
    reference_frame: Callable[[int], np.ndarray] | None = None


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
        clip_frames: int = 81,
        text_cache_size: int = 8,
        batch_guidance: bool = False,
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

    def encode_prompt(self, prompt: str) -> torch.Tensor:
        """[1, text_len, text_dim] in the DiT's dtype; cached, since every chunk of a job repeats it."""
        cached = self._text_cache.get(prompt)
        if cached is None:
            (states,) = self.text_encoder.encode([prompt])
            cached = pad_text(states.float().cpu(), self.dit.config.text_len)[None]
            if len(self._text_cache) >= self.text_cache_size:
                self._text_cache.pop(next(iter(self._text_cache)))
            self._text_cache[prompt] = cached
        return cached.to(self.device, self.dit.patch_embedding.weight.dtype)

    @torch.no_grad()
    def generate(self, request: ChunkRequest, on_step: Callable[[StepReport], None] = lambda _r: None
                 ) -> Iterator[np.ndarray]:
        """Yield uint8 frames [n, H, W, 3] per clip; exactly `frame_count` frames in all."""
        clips = plan_clips(request.frame_count, self.clip_frames, request.motion_frames)
        config = self.dit.config
        height, width = request.image.shape[:2]
        latent_frames = (self.clip_frames - 1) // 4 + 1
        latent_h, latent_w = height // 8, width // 8
        dtype = self.dit.patch_embedding.weight.dtype

        text = self.encode_prompt(request.prompt)
        negative = self.encode_prompt(request.negative_prompt)

        mask = first_frame_mask(latent_frames, latent_h, latent_w).to(self.device)

        def reference_conditioning(rgb: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            """The reference image's tensor, CLIP tokens and conditioning latent `y`."""
            image = image_to_tensor(rgb).to(self.device)
            clip_features = self.clip.encode(image).to(self.device, dtype)
            padded = torch.cat([image[:, :, None], image.new_zeros(1, 3, self.clip_frames - 1, height, width)], dim=2)
            condition = torch.cat([mask, self.vae.encode(padded)[0].to(self.device)])[None].to(dtype)
            return image, clip_features, condition

        image, clip_features, condition = reference_conditioning(request.image)

        total_frames = clips[-1].first_frame + self.clip_frames
        features = self.audio_encoder.embed(request.audio, request.frame_count).float().cpu()
        features = extend_audio_embedding(features, total_frames)

        generator = torch.Generator().manual_seed(request.seed)
        total_steps = request.plan.steps * len(clips)
        frames_done = 0
        motion_source = image[:, :, None]
        for span in clips:
            if request.reference_frame is not None and span.index > 0:
                _, clip_features, condition = reference_conditioning(request.reference_frame(span.first_frame))
            audio = audio_windows(features, span.first_frame, self.clip_frames, config.audio_window)
            audio = audio[None].to(self.device, dtype)
            conditioning = ClipConditioning(text, negative, clip_features, condition, audio)
            motion_latent = self.vae.encode(motion_source)[0].to(self.device, torch.float32)
            noise = torch.randn(config.out_dim, latent_frames, latent_h, latent_w, generator=generator)
            steps_before = span.index * request.plan.steps

            def report(step: int, steps_before: int = steps_before, frames_done: int = frames_done) -> None:
                on_step(StepReport(steps_before + step + 1, total_steps, frames_done))

            latent = self.denoiser(ClipDenoising(conditioning, noise.to(self.device), motion_latent, request.plan,
                                                 request.teacache_coefficients, self.batch_guidance), report)
            video = self.vae.decode(latent[None])  # [1, 3, clip_frames, H, W]
            frames = video_to_frames(video[0])
            if request.color_correction > 0:
                frames = match_colors(frames, request.image, request.color_correction)
                video = image_to_tensor_video(frames).to(self.device)
            motion_source = video[:, :, -request.motion_frames:]
            new_frames = frames[span.keep_from:][: request.frame_count - frames_done]
            frames_done += len(new_frames)
            yield new_frames
