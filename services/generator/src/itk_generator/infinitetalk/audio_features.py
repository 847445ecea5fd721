"""Per-video-frame audio features from chinese-wav2vec2-base, with InfiniteTalk's recipe.

The recipe (src/audio_analysis/wav2vec2.py and get_embedding in the reference): normalise the
waveform with the folder's Wav2Vec2FeatureExtractor, run the CNN feature extractor, linearly
interpolate its output in time to exactly one step per 25 fps video frame, and only then run
the feature projection and the transformer encoder; the per-frame feature is the stack of the
12 encoder layers' outputs. Loudness normalisation happens upstream, once per recording.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from transformers import Wav2Vec2FeatureExtractor, Wav2Vec2Model

from .weights import WeightsError

SAMPLE_RATE = 16000
FPS = 25
WINDOW_RADIUS = 2  # each frame sees its features at offsets -2..+2
# Tensors of the pretraining checkpoint that the bare encoder does not use.
_PRETRAINING_ONLY = ("quantizer.", "project_q.", "project_hid.", "wav2vec2.quantizer.", "lm_head.")


def frames_for(num_samples: int) -> int:
    """Video frames covered by `num_samples` of 16 kHz audio, truncated as the reference does."""
    return int(num_samples / SAMPLE_RATE * FPS)


class AudioFeatureExtractor:
    """16 kHz mono samples -> features [frames, 12, 768] (one row per 25 fps video frame)."""

    def __init__(self, model: Wav2Vec2Model, feature_extractor: Wav2Vec2FeatureExtractor,
                 device: torch.device, dtype: torch.dtype) -> None:
        self.model = model.eval().requires_grad_(False)
        self.feature_extractor = feature_extractor
        self.device, self.dtype = device, dtype

    @classmethod
    def load(cls, wav2vec_dir: Path, device: str | torch.device = "cpu",
             dtype: torch.dtype = torch.float32) -> AudioFeatureExtractor:
        folder = str(wav2vec_dir)
        try:
            model, info = Wav2Vec2Model.from_pretrained(folder, local_files_only=True, output_loading_info=True)
            feature_extractor = Wav2Vec2FeatureExtractor.from_pretrained(folder, local_files_only=True)
        except (OSError, ValueError) as err:
            raise WeightsError(f"cannot load wav2vec2 from {wav2vec_dir}: {err}") from err
        unexpected = [key for key in info["unexpected_keys"] if not key.startswith(_PRETRAINING_ONLY)]
        problems = [f"missing tensors {sorted(info['missing_keys'])}"] if info["missing_keys"] else []
        problems += [f"unexpected tensors {sorted(unexpected)}"] if unexpected else []
        problems += [f"wrong shapes {info['mismatched_keys']}"] if info.get("mismatched_keys") else []
        if problems:
            raise WeightsError(f"wav2vec2 weights in {wav2vec_dir} do not match its config: " + "; ".join(problems))
        device = torch.device(device)
        return cls(model.to(device=device, dtype=dtype), feature_extractor, device, dtype)

    @property
    def layers(self) -> int:
        return self.model.config.num_hidden_layers

    @property
    def width(self) -> int:
        return self.model.config.hidden_size

    @torch.no_grad()
    def embed(self, samples: np.ndarray, num_frames: int | None = None) -> torch.Tensor:
        """float32 samples -> [num_frames, layers, width] (float32, on the CPU).

        `num_frames` defaults to the reference's int(seconds * 25).
        """
        num_frames = frames_for(len(samples)) if num_frames is None else num_frames
        if num_frames < 1:
            raise ValueError(f"{len(samples)} samples make no video frame")
        values = self.feature_extractor(samples, sampling_rate=SAMPLE_RATE, return_tensors="pt").input_values
        values = values.to(self.device, self.dtype)
        conv = self.model.feature_extractor(values)  # [1, channels, steps] at 50 steps per second
        conv = F.interpolate(conv, size=num_frames, mode="linear", align_corners=True).transpose(1, 2)
        hidden, _ = self.model.feature_projection(conv)
        return torch.stack(self._layer_outputs(hidden), dim=2)[0].float().cpu()

    def _layer_outputs(self, hidden: torch.Tensor) -> list[torch.Tensor]:
        """Run transformers' encoder and collect every layer's output (hidden states 1..N)."""
        outputs: list[torch.Tensor] = []

        def keep(_module, _inputs, output) -> None:
            outputs.append(output[0] if isinstance(output, tuple) else output)

        handles = [layer.register_forward_hook(keep) for layer in self.model.encoder.layers]
        try:
            self.model.encoder(hidden)
        finally:
            for handle in handles:
                handle.remove()
        return outputs


def frame_windows(features: torch.Tensor, start: int = 0, stop: int | None = None,
                  radius: int = WINDOW_RADIUS) -> torch.Tensor:
    """Features [F, L, D] -> windows [stop - start, 2*radius + 1, L, D] for frames start..stop-1.

    Offsets -radius..+radius around each frame, clamped to the whole recording's frames (so a
    clip's window reaches into its neighbours' audio, as in the reference).
    """
    stop = features.shape[0] if stop is None else stop
    centres = torch.arange(start, stop).unsqueeze(1) + torch.arange(-radius, radius + 1).unsqueeze(0)
    return features[centres.clamp(0, features.shape[0] - 1)]
