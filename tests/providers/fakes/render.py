"""What a fake provider's worker renders: the preview's talking portrait at the provider's own
frame rate and 4n+1 frame count, so tests see the generator convert it to exact 25 fps frames.

Frame j of the provider's video shows the mouth for the middle of its time span, (j + 0.5) / fps,
read from the preview's per-25-fps-frame openness of the audio; frames past the audio's end show
a closed mouth (the model pads the audio with silence up to its 4n+1 count).
"""

from __future__ import annotations

import math
from pathlib import Path

from itk_common.constants import FPS, SAMPLE_RATE, frames_for_samples
from itk_common.video import Mp4Writer
from itk_common.wav import decode_wav
from itk_generator.images import decode_image
from itk_generator.preview import PreviewBackend
from itk_generator.preview.layout import fit_image, output_size
from itk_generator.preview.mouth import draw_mouth, mouth_openness


def four_n_plus_one_at_least(frames: int) -> int:
    return 4 * math.ceil(max(frames - 1, 0) / 4) + 1


def four_n_plus_one_at_most(frames: int) -> int:
    return 4 * max((frames - 1) // 4, 0) + 1


def render_provider_video(path: Path, image: bytes, wav: bytes, width: int, height: int, fps: int,
                          longer: bool, previewer: PreviewBackend) -> int:
    """Write the provider's MP4; `longer`: 4n+1 frames covering the audio (RunPod, Beam workers),
    else 4n+1 frames a little shorter than it (the Modal app keeps 5 frames of margin). The count."""
    samples = decode_wav(wav)
    duration = len(samples) / SAMPLE_RATE
    count = four_n_plus_one_at_least(math.ceil(duration * fps)) if longer else \
        four_n_plus_one_at_most(int(duration * fps) - 5)
    width, height = output_size(width, height)
    portrait = decode_image(image)
    background = fit_image(portrait, width, height)
    box = previewer.mouth_box(portrait, width, height)
    openness = mouth_openness(samples, frames_for_samples(len(samples)))
    with Mp4Writer(path, width, height, fps=fps) as writer:
        for j in range(count):
            ours = int((j + 0.5) / fps * FPS)
            frame = background.copy()
            draw_mouth(frame, box, float(openness[ours]) if ours < len(openness) else 0.0)
            writer.write(frame)
    return count
