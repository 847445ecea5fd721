"""The chunk pipeline on the tiny model directory: clip layout, motion frames, exact length, seeds."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from itk_common.constants import SAMPLES_PER_FRAME
from itk_gateway.config import Settings as GatewaySettings
from itk_generator.infinitetalk.model_factory import build_pipeline
from itk_generator.infinitetalk.pipeline import (
    ChunkRequest,
    InfiniteTalkPipeline,
    StepReport,
    audio_windows,
    clip_noise,
    extend_audio_embedding,
    match_colors,
    plan_clips,
)
from itk_generator.infinitetalk.sampling import SamplingPlan
from itk_generator.infinitetalk.settings import InfiniteTalkSettings
from itk_splitter.lanes import plan_lanes
from itk_splitter.options import SplitOptions
from itk_splitter.plan import ChunkSpan
from tests.helpers.audio import speech_like

CLIP_FRAMES = 21  # 6 latent frames a clip: InfiniteTalk's layout at a size a 2-core CPU runs quickly
MOTION_FRAMES = 9
SIZE = 32
PLAN = SamplingPlan(steps=2, shift=2.0, text_guidance=1.0, audio_guidance=2.0)


def test_clip_layout_follows_streaming_mode() -> None:
    spans = plan_clips(250, clip_frames=81, motion_frames=9)
    assert [(s.first_frame, s.keep_from) for s in spans] == [(0, 0), (72, 9), (144, 9), (216, 9)]
    assert len(plan_clips(81)) == 1
    assert len(plan_clips(82)) == 2
    assert len(plan_clips(153)) == 2 and len(plan_clips(154)) == 3
    with pytest.raises(ValueError):
        plan_clips(100, clip_frames=81, motion_frames=8)


def test_audio_windows_clamp_and_mirror_the_tail() -> None:
    features = torch.arange(10.0)[:, None, None]  # frame index as the feature
    windows = audio_windows(features, first_frame=0, clip_frames=3)
    assert windows[:, :, 0, 0].tolist() == [[0, 0, 0, 1, 2], [0, 0, 1, 2, 3], [0, 1, 2, 3, 4]]
    extended = extend_audio_embedding(features, 12)
    # two frames missing: the last 2 + 3 frames are appended mirrored, as the reference does
    assert extended[:, 0, 0].tolist() == [*range(10), 9, 8, 7, 6, 5]
    assert torch.equal(extend_audio_embedding(features, 8), features)


def test_colour_correction_moves_statistics_to_the_reference() -> None:
    rng = np.random.default_rng(0)
    reference = rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)
    frames = np.clip(reference[None].astype(int) // 2 + 90, 0, 255).astype(np.uint8).repeat(2, axis=0)
    corrected = match_colors(frames, reference, 1.0)
    assert abs(corrected.mean() - reference.mean()) < abs(frames.mean() - reference.mean()) / 4
    assert np.array_equal(match_colors(frames, reference, 0.0), frames)


class RecordingVAE:
    """The real VAE, remembering what it was asked to encode."""

    def __init__(self, vae) -> None:
        self.vae = vae
        self.encoded: list[torch.Tensor] = []
        self.decoded: list[torch.Tensor] = []

    def encode(self, video: torch.Tensor) -> torch.Tensor:
        self.encoded.append(video.clone())
        return self.vae.encode(video)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        video = self.vae.decode(latents)
        self.decoded.append(video.clone())
        return video


@pytest.fixture(scope="module")
def pipeline(tiny_model_dir: Path) -> InfiniteTalkPipeline:
    settings = InfiniteTalkSettings(model_dir=tiny_model_dir, device="cpu", dtype="fp32", clip_frames=CLIP_FRAMES,
                                    size=(SIZE, SIZE))
    return build_pipeline(settings)


def portrait(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    image = np.full((SIZE, SIZE, 3), (180, 140, 120), dtype=np.uint8)
    image[8:24, 10:22] = rng.integers(0, 255, (16, 12, 3), dtype=np.uint8)
    return image


def request(frame_count: int, seed: int = 3, audio_seed: int = 1, **changes) -> ChunkRequest:
    audio = speech_like(frame_count / 25, pause_every_sec=10.0, seed=audio_seed).astype(np.float32)
    return ChunkRequest(image=portrait(), audio=audio, frame_count=frame_count, prompt="a person talking",
                        seed=seed, plan=PLAN, motion_frames=MOTION_FRAMES, **changes)


def generate(pipeline: InfiniteTalkPipeline, chunk: ChunkRequest, reports: list | None = None) -> np.ndarray:
    sink = reports if reports is not None else []
    return np.concatenate(list(pipeline.generate(chunk, sink.append)))


def test_two_clips_exact_frames_and_motion_conditioning(pipeline: InfiniteTalkPipeline) -> None:
    frame_count = CLIP_FRAMES + 5  # past one clip: a second clip conditioned on the first one's last frames
    recording = RecordingVAE(pipeline.vae)
    pipeline.vae = recording
    reports: list[StepReport] = []
    try:
        frames = generate(pipeline, request(frame_count), reports)
    finally:
        pipeline.vae = recording.vae
    assert frames.shape == (frame_count, SIZE, SIZE, 3) and frames.dtype == np.uint8

    # encodes: the conditioning video (image + black frames), clip 1's motion (the image), clip 2's motion
    conditioning, first_motion, second_motion = recording.encoded
    assert conditioning.shape[2] == CLIP_FRAMES and conditioning[:, :, 1:].abs().max() == 0
    assert first_motion.shape[2] == 1
    assert second_motion.shape[2] == MOTION_FRAMES
    # the motion frames are the first clip's last frames in the motion format (float16), as a
    # next piece would receive them
    decoded_tail = recording.decoded[0][:, :, -MOTION_FRAMES:].clamp(-1, 1)
    assert torch.equal(second_motion, decoded_tail.half().float())
    # clip 2 adds only its new frames: the chunk is clip 1 then clip 2 minus its motion frames
    clip_two = recording.decoded[1][0]
    expected_tail = ((clip_two[:, MOTION_FRAMES:].clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    assert np.array_equal(frames[CLIP_FRAMES:], expected_tail.permute(1, 2, 3, 0).numpy()[: frame_count - CLIP_FRAMES])

    assert [r.step for r in reports] == [1, 2, 3, 4]
    assert all(r.total_steps == 4 for r in reports)
    assert [r.frames_done for r in reports] == [0, 0, CLIP_FRAMES, CLIP_FRAMES]


def test_same_seed_same_video_and_audio_matters(pipeline: InfiniteTalkPipeline) -> None:
    first = generate(pipeline, request(17, seed=11))
    again = generate(pipeline, request(17, seed=11))
    other_seed = generate(pipeline, request(17, seed=12))
    other_audio = generate(pipeline, request(17, seed=11, audio_seed=5))
    assert np.array_equal(first, again)
    assert not np.array_equal(first, other_seed)
    assert not np.array_equal(first, other_audio)


def test_short_chunk_is_one_trimmed_clip(pipeline: InfiniteTalkPipeline) -> None:
    frames = generate(pipeline, request(7))
    assert frames.shape[0] == 7


def test_continued_clip_layout() -> None:
    spans = plan_clips(144, clip_frames=81, motion_frames=9, continued=True)
    assert [(s.first_frame, s.keep_from) for s in spans] == [(-9, 9), (63, 9)]
    assert len(plan_clips(145, continued=True)) == 3


def test_clip_noise_depends_on_seed_lane_and_position() -> None:
    shape = (2, 3, 4)
    base = clip_noise(7, 0, 72, shape)
    assert torch.equal(base, clip_noise(7, 0, 72, shape))
    for other in (clip_noise(8, 0, 72, shape), clip_noise(7, 1, 72, shape), clip_noise(7, 0, 144, shape)):
        assert not torch.equal(base, other)


def gateway_pieces(audio: np.ndarray, chunk_target_sec: float) -> list[ChunkSpan]:
    """The second of two lanes of `audio` as the gateway plans and sends it: the splitter's plan
    with the gateway's default audio context, on this model's clip grid."""
    options = SplitOptions(lane_count=2, min_lane_sec=1.0, chunk_target_sec=chunk_target_sec, min_chunk_sec=0.4,
                           clip_frames=CLIP_FRAMES, motion_frames=MOTION_FRAMES,
                           audio_context_sec=GatewaySettings().audio_context_sec).validated()
    return [chunk for chunk in plan_lanes([], len(audio), options).chunks if chunk.lane == 1]


def piece_request(audio: np.ndarray, piece: ChunkSpan, motion: np.ndarray | None) -> ChunkRequest:
    """What a generator builds from the piece's WAV (its samples and their context) and spec."""
    sent = audio[piece.wav_start: piece.wav_end]
    before = piece.start_sample - piece.wav_start
    return ChunkRequest(image=portrait(), audio=sent[before: before + piece.num_samples],
                        frame_count=piece.frame_count, prompt="a person talking", seed=5, plan=PLAN,
                        motion_frames=MOTION_FRAMES, color_correction=1.0, lane=piece.lane,
                        lane_first_frame=piece.lane_first_frame, motion=motion, context_audio=sent,
                        context_before=before)


def test_lane_in_pieces_renders_like_the_lane_rendered_whole(pipeline: InfiniteTalkPipeline) -> None:
    """A lane cut into pieces on the clip grid gives the frames of the lane rendered as one piece,
    colour correction on, each piece given exactly the audio the gateway sends it and the previous
    piece's motion frames: the audio features of every piece are those of the whole lane."""
    audio = speech_like(4.0, pause_every_sec=10.0, seed=3).astype(np.float32)
    [whole_piece] = gateway_pieces(audio, chunk_target_sec=30.0)
    pieces = gateway_pieces(audio, chunk_target_sec=1.0)
    assert len(pieces) == 2 and pieces[0].start_sample == whole_piece.start_sample > 0
    assert pieces[-1].end_sample == whole_piece.end_sample == len(audio)
    whole_motion: list[np.ndarray] = []
    whole = np.concatenate(list(pipeline.generate(piece_request(audio, whole_piece, None),
                                                  on_motion=whole_motion.append)))
    frames: list[np.ndarray] = []
    motion: list[np.ndarray] = []
    for piece in pieces:
        frames.extend(pipeline.generate(piece_request(audio, piece, motion[-1] if motion else None),
                                        on_motion=motion.append))
    assert motion[0].shape == (MOTION_FRAMES, SIZE, SIZE, 3) and motion[0].dtype == np.float16
    assert np.array_equal(np.concatenate(frames), whole)
    assert np.array_equal(motion[-1], whole_motion[0])

    # With only the context around itself (what pieces were sent before), the last piece's audio
    # features, and so its frames, differ from the lane's.
    last = pieces[-1]
    own = replace(last, wav_start_sample=last.start_sample - 50 * SAMPLES_PER_FRAME)
    alone = np.concatenate(list(pipeline.generate(piece_request(audio, own, motion[-2]))))
    assert not np.array_equal(alone, np.concatenate(frames)[last.lane_first_frame:])


def test_image_and_prompt_encodings_are_computed_once(pipeline: InfiniteTalkPipeline) -> None:
    recording = RecordingVAE(pipeline.vae)
    pipeline.vae = recording
    encoded_prompts: list[list[str]] = []
    text_encoder = pipeline.text_encoder
    original_encode = text_encoder.encode
    text_encoder.encode = lambda prompts: encoded_prompts.append(prompts) or original_encode(prompts)
    try:
        image = portrait(seed=9)
        for seed in (1, 2):
            generate(pipeline, replace(request(7, seed=seed), image=image, prompt="cache me"))
    finally:
        pipeline.vae = recording.vae
        del text_encoder.encode
    conditioning = [video for video in recording.encoded if video.shape[2] == CLIP_FRAMES]
    assert len(conditioning) == 1
    assert encoded_prompts.count(["cache me"]) == 1
