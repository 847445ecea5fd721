"""Synthetic speech from espeak-ng (Debian's `espeak-ng` package): real phonemes, real pauses.

Sentences are drawn from a fixed vocabulary by a seeded generator, so the same arguments give the
same recording. espeak-ng pauses about 0.3 s at a comma or full stop, shorter than the splitter's
0.5 s pause length, and leaves short gaps between some words: the recording a seam search has to
cope with when a speaker never stops for long.
"""

from __future__ import annotations

import shutil
import subprocess

import numpy as np

SUBJECTS = ("the farmer", "my sister", "a small dog", "our teacher", "the old captain", "every child",
            "the baker next door", "a tired traveller", "the new manager", "her grandfather")
VERBS = ("carried", "painted", "forgot", "discovered", "borrowed", "repaired", "described", "followed",
         "ordered", "visited")
OBJECTS = ("a wooden chair", "the yellow boat", "three letters", "the broken window", "a heavy basket",
           "the morning train", "an empty bottle", "the village market", "a long story", "the blue door")
ENDINGS = ("before dinner", "in the rain", "without a word", "on a quiet Sunday", "after the storm",
           "near the river", "with great care", "at the last minute", "for the whole family", "again")


def espeak_available() -> bool:
    return shutil.which("espeak-ng") is not None


def sentences(count: int, seed: int = 0) -> str:
    """`count` sentences, some with a comma in them."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        parts = [str(rng.choice(SUBJECTS)), str(rng.choice(VERBS)), str(rng.choice(OBJECTS))]
        if rng.random() < 0.5:
            parts[-1] += ","
        parts.append(str(rng.choice(ENDINGS)))
        sentence = " ".join(parts)
        out.append(sentence[0].upper() + sentence[1:] + ".")
    return " ".join(out)


def espeak_wav(text: str, words_per_minute: int = 175) -> bytes:
    """`text` spoken by espeak-ng's default English voice, as WAV bytes (22.05 kHz mono)."""
    if not espeak_available():
        raise RuntimeError("espeak-ng is not installed (Debian: apt-get install espeak-ng)")
    done = subprocess.run(["espeak-ng", "-v", "en-us", "-s", str(words_per_minute), "--stdout"],
                          input=text.encode(), capture_output=True, check=True, timeout=600)
    return done.stdout


def speech_recording(duration_sec: float, seed: int = 0) -> bytes:
    """About `duration_sec` of espeak-ng speech (WAV bytes), cut to that length at 16 kHz."""
    from itk_common.wav import encode_wav
    from itk_splitter.decode import decode_audio

    # About 2.5 s a sentence at 175 words a minute; make enough and cut.
    samples = decode_audio(espeak_wav(sentences(int(duration_sec / 2.0) + 4, seed)))
    want = round(duration_sec * 16_000)
    if len(samples) < want:
        raise RuntimeError(f"espeak-ng made {len(samples) / 16_000:.1f} s, fewer than {duration_sec} s")
    return encode_wav(samples[:want])
