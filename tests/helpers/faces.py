"""Talking-face test videos made from the bundled portrait, by construction.

The lips are really parted: below the inner-lip line the mouth region (chin included) is moved down
by the frame's openness, and the gap filled with a dark mouth inside, so dlib's landmarks follow it
as they would a filmed mouth. The openness follows the frame's loudness the way the preview backend's
does. Variations: a colour shift that grows over the video, and another person's face (from
scikit-image's bundled LFW crops) pasted over the portrait's face for a span of frames.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from itk_common.constants import SAMPLES_PER_FRAME
from itk_common.quality.faces import FaceModels
from itk_common.video import Mp4Writer
from itk_common.wav import decode_wav, encode_wav

ROOT = Path(__file__).resolve().parents[2]
PORTRAIT = ROOT / "assets" / "sample" / "portrait.png"
SPEECH = ROOT / "assets" / "sample" / "speech.wav"
# The portrait's head and shoulders, small enough to keep tests fast, the face still ~90 px wide.
CROP = (92, 0, 348, 256)
MOUTH_INSIDE = np.array([70, 25, 30], dtype=np.float32)
MAX_OPEN_EYE_DISTANCES = 0.45


def portrait() -> np.ndarray:
    left, top, right, bottom = CROP
    return np.asarray(Image.open(PORTRAIT).convert("RGB"))[top:bottom, left:right].copy()


def speech(seconds: float) -> np.ndarray:
    samples = decode_wav(SPEECH.read_bytes())
    return samples[: round(seconds * 16_000)]


def openness(samples: np.ndarray, frame_count: int) -> np.ndarray:
    """0..1 per frame from the loudness, -45..-12 dBFS mapped linearly (as the preview maps it)."""
    padded = np.zeros(frame_count * SAMPLES_PER_FRAME)
    padded[: min(len(samples), len(padded))] = samples[: len(padded)]
    rms = np.sqrt((padded.reshape(frame_count, SAMPLES_PER_FRAME) ** 2).mean(axis=1))
    level = 20 * np.log10(np.maximum(rms, 1e-6))
    return np.clip((level + 45.0) / 33.0, 0.0, 1.0)


class MouthWarp:
    """Opens the portrait's mouth by a given amount (0..1)."""

    def __init__(self, rgb: np.ndarray, models: FaceModels) -> None:
        face = models.find(rgb)
        assert face is not None, "no face in the test portrait"
        points = face.landmarks
        self.rgb = rgb.astype(np.float32)
        self.lip_y = round(points[60:68, 1].mean())
        self.chin_y = int(points[8, 1]) + 4
        self.left, self.right = int(points[48, 0]) - 2, int(points[54, 0]) + 3
        self.max_open = MAX_OPEN_EYE_DISTANCES * face.eye_distance

    def frame(self, amount: float) -> np.ndarray:
        out = self.rgb.copy()
        opening = amount * self.max_open
        if opening >= 0.5:
            xs = np.arange(self.left, self.right)
            # The gap is widest in the middle of the mouth and closes at the corners.
            shape = np.sin(np.pi * (xs - self.left + 0.5) / (self.right - self.left))
            for x, weight in zip(xs, shape, strict=True):
                drop = round(opening * weight)
                if drop <= 0:
                    continue
                column = self.rgb[self.lip_y:self.chin_y, x]
                out[self.lip_y + drop:self.chin_y + drop, x] = column
                out[self.lip_y:self.lip_y + drop, x] = MOUTH_INSIDE
        return np.clip(out, 0, 255).astype(np.uint8)


def other_face(size: int) -> np.ndarray:
    """Another person: a face crop from scikit-image's LFW subset, scaled up to `size`, in RGB."""
    from skimage import data, transform

    face = transform.resize(data.lfw_subset()[0], (size, size), order=3)
    grey = (np.clip(face, 0, 1) * 255).astype(np.uint8)
    return np.stack([grey] * 3, axis=-1)


def write_talking_video(path: Path, samples: np.ndarray, models: FaceModels, *,
                        edit: Callable[[int, np.ndarray], np.ndarray] | None = None) -> int:
    """A silent MP4 whose mouth follows `samples`; `edit(frame_index, rgb)` may change each frame.
    Returns the frame count."""
    base = portrait()
    warp = MouthWarp(base, models)
    frame_count = -(-len(samples) // SAMPLES_PER_FRAME)
    amounts = openness(samples, frame_count)
    height, width = base.shape[:2]
    with Mp4Writer(path, width, height) as writer:
        for index, amount in enumerate(amounts):
            rgb = warp.frame(float(amount))
            writer.write(edit(index, rgb) if edit is not None else rgb)
    return frame_count


def mux_sound(video: Path, samples: np.ndarray, out: Path) -> None:
    """`video`'s frames (stream copy) with `samples` (16 kHz mono) as its AAC sound track."""
    import av

    from itk_common.aac import aac_packets, add_aac_stream

    wav = out.with_suffix(".wav")
    wav.write_bytes(encode_wav(samples))
    with av.open(str(video)) as source, av.open(str(out), mode="w", format="mp4") as target:
        video_in = source.streams.video[0]
        video_out = target.add_stream_from_template(video_in)
        sound = add_aac_stream(target, 16_000, 1)
        for packet in source.demux(video_in):
            if packet.dts is None:
                continue
            packet.stream = video_out
            target.mux(packet)
        for packet in aac_packets(wav, sound):
            target.mux(packet)
    wav.unlink()


def portrait_png() -> bytes:
    import io

    buffer = io.BytesIO()
    Image.fromarray(portrait()).save(buffer, format="PNG")
    return buffer.getvalue()
