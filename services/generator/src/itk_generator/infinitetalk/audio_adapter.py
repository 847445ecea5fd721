"""InfiniteTalk's audio adapter: audio features -> per-latent-frame tokens -> per-block cross-attention.

Audio features arrive per video frame as 5-frame windows of wav2vec2 hidden states
[B, frames, window=5, layers=12, channels=768]. The first latent frame stands for one video
frame and uses its window; every later latent frame stands for 4 video frames (the VAE's
temporal stride) and uses 8 windows: the first half (offsets -2..0) of its first frame, the
centre of the middle frames and the second half (0..+2) of its last frame. AudioProjModel
turns those into 32 tokens of 768 per latent frame; in every block, the video tokens of each
latent frame attend to that frame's 32 audio tokens only.

With several persons each one's windows go through AudioProjModel on their own and a latent
frame's audio tokens are the persons' tokens one after the other (32 per person); the audio
cross-attention then rotates queries and keys by speaker labels (speakers.py) so that each video
token listens to its own person.
"""

from __future__ import annotations

import torch
from torch import nn

from .attention import Attention
from .config import DiTConfig
from .speakers import apply_label_rope, label_rope_cos_sin, person_key_labels


def gather_latent_audio_windows(audio: torch.Tensor, vae_scale: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Split per-frame windows [B, 1 + vae_scale*(T-1), W, L, C] into the first frame's
    [B, 1, W, L, C] and the later latent frames' [B, T-1, W + vae_scale - 1, L, C]."""
    frames, window = audio.shape[1:3]
    if (frames - 1) % vae_scale:
        raise ValueError(f"audio covers {frames} frames; it must be 1 + {vae_scale}*n to match the latents")
    centre = window // 2
    first = audio[:, :1]
    later = audio[:, 1:].unflatten(1, ((frames - 1) // vae_scale, vae_scale))  # [B, T-1, vae_scale, W, L, C]
    gathered = torch.cat([
        later[:, :, 0, : centre + 1],        # first video frame of the latent frame: offsets -2..0
        later[:, :, 1:-1, centre],           # middle frames: their own frame only
        later[:, :, -1, centre:],            # last frame: offsets 0..+2
    ], dim=2)
    return first, gathered


class AudioProjModel(nn.Module):
    """Projects audio windows to `context_tokens` tokens per latent frame (names as in the checkpoint)."""

    def __init__(self, config: DiTConfig) -> None:
        super().__init__()
        per_window = config.audio_layers * config.audio_channels
        self.context_tokens = config.audio_context_tokens
        self.output_dim = config.audio_output_dim
        self.proj1 = nn.Linear(config.audio_window * per_window, config.audio_intermediate_dim)
        self.proj1_vf = nn.Linear(config.audio_window_latent * per_window, config.audio_intermediate_dim)
        self.proj2 = nn.Linear(config.audio_intermediate_dim, config.audio_intermediate_dim)
        self.proj3 = nn.Linear(config.audio_intermediate_dim, config.audio_context_tokens * config.audio_output_dim)
        self.norm = nn.LayerNorm(config.audio_output_dim)

    def forward(self, first_frame: torch.Tensor, later_frames: torch.Tensor) -> torch.Tensor:
        """[B, 1, W, L, C] and [B, T-1, W', L, C] -> audio tokens [B, T, tokens, output_dim]."""
        first = torch.relu(self.proj1(first_frame.flatten(2)))
        later = torch.relu(self.proj1_vf(later_frames.flatten(2)))
        hidden = torch.relu(self.proj2(torch.cat([first, later], dim=1)))
        tokens = self.proj3(hidden).unflatten(-1, (self.context_tokens, self.output_dim))
        return self.norm(tokens)


class AudioCrossAttention(nn.Module):
    """Audio cross-attention: each latent frame's video tokens attend to its own audio tokens.

    With `labels` (several persons) the queries are rotated by their token's speaker label and
    the keys by their person's label before the attention (the reference's L-RoPE)."""

    def __init__(self, config: DiTConfig, attention: Attention) -> None:
        super().__init__()
        self.num_heads = config.num_heads
        self.head_dim = config.head_dim
        self.attention = attention
        self.q_linear = nn.Linear(config.dim, config.dim)
        self.kv_linear = nn.Linear(config.audio_output_dim, 2 * config.dim)
        self.proj = nn.Linear(config.dim, config.dim)

    def forward(self, x: torch.Tensor, audio_tokens: torch.Tensor, first_token: int = 0,
                tokens_per_frame: int = 0, labels: torch.Tensor | None = None, persons: int = 1) -> torch.Tensor:
        """x [B, T*S, dim] (tokens in frame-major order), audio_tokens [B, T, N_a, audio_dim]
        (N_a = persons * tokens per person); labels: each token's speaker label, given with several
        persons: [B, tokens of x], or [B, T*S] for every token (with sequence parallelism, where x
        is a run of them).

        With sequence parallelism x is a contiguous run of the tokens, from `first_token` on, and
        `tokens_per_frame` (S) says where the frames begin: the run's queries are padded with
        zeros to whole frames for the attention (queries are independent, so the padding changes
        nothing) and the padding is dropped before the output projection.
        """
        batch, frames, audio_len = audio_tokens.shape[:3]
        per_frame = tokens_per_frame or x.shape[1] // frames
        tokens = x.shape[1]
        first_frame, last_frame = first_token // per_frame, (first_token + tokens - 1) // per_frame
        covered = last_frame - first_frame + 1
        before = first_token - first_frame * per_frame
        after = covered * per_frame - before - tokens
        q = self.q_linear(x).unflatten(-1, (self.num_heads, self.head_dim))
        if labels is not None:
            if labels.shape[1] != tokens:
                labels = labels[:, first_token:first_token + tokens]
            q = apply_label_rope(q, *label_rope_cos_sin(labels, self.head_dim))
        if before or after:
            q = torch.nn.functional.pad(q, (0, 0, 0, 0, before, after))
        q = q.view(batch * covered, per_frame, self.num_heads, self.head_dim)
        frame_tokens = audio_tokens[:, first_frame:last_frame + 1]
        k, v = self.kv_linear(frame_tokens).view(batch * covered, audio_len, 2, self.num_heads,
                                                 self.head_dim).unbind(2)
        if labels is not None:
            key_labels = person_key_labels(persons, audio_len // persons, k.device)
            k = apply_label_rope(k, *label_rope_cos_sin(key_labels, self.head_dim))
        out = self.attention(q, k, v).reshape(batch, covered * per_frame, -1)
        return self.proj(out[:, before:before + tokens])
