"""How far a piece of a long lane strays from the lane rendered whole, against the audio it is sent.

A piece is sent its whole lane's audio (plus AUDIO_CONTEXT_SEC around it) up to LANE_AUDIO_MAX_SEC;
a longer lane sends each piece the window of that length centred on it, so the audio encoder
(which normalises and attends over everything it is given) sees less than the whole lane. This
measures what that costs on the tiny model: one 12-minute lane planned by the splitter with the
gateway's defaults; for its last piece, the audio features and the first two clips' frames computed
from windows of several lengths, against those computed from the whole lane. The frames differ
only through the features (same seed, same start from the portrait).

    python bench/bench_lane_context.py
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from itk_common.constants import SAMPLES_PER_FRAME  # noqa: E402
from itk_gateway.config import Settings as GatewaySettings  # noqa: E402
from itk_generator.infinitetalk.model_factory import build_pipeline  # noqa: E402
from itk_generator.infinitetalk.pipeline import ChunkRequest  # noqa: E402
from itk_generator.infinitetalk.sampling import SamplingPlan  # noqa: E402
from itk_generator.infinitetalk.settings import InfiniteTalkSettings  # noqa: E402
from itk_generator.infinitetalk.tiny import build_tiny_model_dir  # noqa: E402
from itk_splitter.lanes import LANE_AUDIO_MAX_SEC, lane_audio_span, plan_lanes  # noqa: E402
from itk_splitter.options import SplitOptions  # noqa: E402
from tests.helpers.audio import speech_like  # noqa: E402

LANE_SEC = 720.0
CLIP_FRAMES, MOTION_FRAMES, SIZE = 21, 9, 32  # the tiny model's test layout
RENDERED_FRAMES = 33  # two clips
# Windows longer than the piece (45 s): a piece at least as long as the window is sent its whole lane.
WINDOWS_SEC = (60, 120, 300, LANE_AUDIO_MAX_SEC)
PLAN = SamplingPlan(steps=2, shift=2.0, text_guidance=1.0, audio_guidance=2.0)
RATE = 16_000


def portrait() -> np.ndarray:
    rng = np.random.default_rng(0)
    image = np.full((SIZE, SIZE, 3), (180, 140, 120), dtype=np.uint8)
    image[8:24, 10:22] = rng.integers(0, 255, (16, 12, 3), dtype=np.uint8)
    return image


def run() -> list[dict[str, object]]:
    audio = speech_like(LANE_SEC, pause_every_sec=4.0, seed=11).astype(np.float32)
    gateway = GatewaySettings()
    options = SplitOptions(lane_count=1, chunk_target_sec=gateway.chunk_target_sec, clip_frames=CLIP_FRAMES,
                           motion_frames=MOTION_FRAMES, audio_context_sec=gateway.audio_context_sec).validated()
    piece = plan_lanes([], len(audio), options).chunks[-1]
    context = round(gateway.audio_context_sec * 25) * SAMPLES_PER_FRAME
    lane_start, lane_end = 0, len(audio)
    with tempfile.TemporaryDirectory() as folder:
        settings = InfiniteTalkSettings(model_dir=build_tiny_model_dir(Path(folder)), device="cpu", dtype="fp32",
                                        clip_frames=CLIP_FRAMES, size=(SIZE, SIZE))
        pipeline = build_pipeline(settings)

        def sent_span(window_sec: float | None) -> tuple[int, int]:
            if window_sec is None:  # the piece and AUDIO_CONTEXT_SEC around it, nothing more
                return max(0, piece.start_sample - context), min(len(audio), piece.end_sample + context)
            return lane_audio_span(piece.start_sample, piece.end_sample, lane_start, lane_end,
                                   round(window_sec * RATE))

        def features_and_frames(span: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
            sent = audio[span[0]:span[1]]
            before = piece.start_sample - span[0]
            offset = before // SAMPLES_PER_FRAME
            embedded = pipeline.audio_encoder.embed(sent, -(-len(sent) // SAMPLES_PER_FRAME)).numpy()
            request = ChunkRequest(image=portrait(), audio=sent[before: before + RENDERED_FRAMES * SAMPLES_PER_FRAME],
                                   frame_count=RENDERED_FRAMES, prompt="a person talking", seed=5, plan=PLAN,
                                   motion_frames=MOTION_FRAMES, color_correction=1.0, context_audio=sent,
                                   context_before=before)
            frames = np.concatenate(list(pipeline.generate(request)))
            return embedded[offset: offset + piece.frame_count], frames

        whole_features, whole_frames = features_and_frames(sent_span(LANE_SEC * 2))
        scale = float(np.sqrt(np.mean(whole_features ** 2)))
        rows: list[dict[str, object]] = []
        for window in (None, *WINDOWS_SEC, LANE_SEC * 2):
            span = sent_span(window)
            features, frames = features_and_frames(span)
            feature_error = features - whole_features
            pixel_error = np.abs(frames.astype(int) - whole_frames.astype(int))
            label = ("the piece + context" if window is None else "whole lane" if window > LANE_SEC
                     else f"{window} s window" + (" (product)" if window == LANE_AUDIO_MAX_SEC else ""))
            rows.append({
                "audio sent": label,
                "seconds sent": (span[1] - span[0]) / RATE,
                "feature max |dev|": float(np.abs(feature_error).max()),
                "feature rms dev / rms": float(np.sqrt(np.mean(feature_error ** 2))) / scale,
                "frames max grey dev": int(pixel_error.max()),
                "frames mean grey dev": float(pixel_error.mean()),
            })
    return rows


def main() -> int:
    from bench.table import print_table

    print_table(f"The last piece of a {LANE_SEC / 60:.0f}-minute lane (tiny model): audio features and its first "
                f"{RENDERED_FRAMES} frames against the lane rendered whole", run())
    return 0


if __name__ == "__main__":
    sys.exit(main())
