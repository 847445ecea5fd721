"""Two people talking: checking a multi-person request and choosing each speaker's face box.

Each speaker has a recording (person 1's is the job's `audio`, person 2's `audio_2`, or both are
the channels of one stereo recording) and a face box [x0, y0, x1, y1] in pixels of the portrait,
x to the right and y down. Without boxes, the portrait's detected faces are the boxes, left to
right = person 1, 2; the job view says which boxes were used and where they came from. The
generators get the boxes as fractions of the image (ChunkSpec.persons).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from infinitetalk.v1 import generator_pb2
from itk_common.faces import FaceFinder
from itk_gateway.errors import InvalidInputError
from itk_gateway.options import JobOptions

# The multi-person model renders two speakers.
MAX_SPEAKERS = 2
AUDIO_TYPES = ("para", "add")
BOXES_FROM_REQUEST, BOXES_FROM_FACES = "request", "faces"


def parse_boxes(raw: Any, name: str = "boxes") -> list[list[int]]:
    """A JSON list of [x0, y0, x1, y1] pixel boxes (or null entries are refused: all or none)."""
    if raw is None or raw == []:
        return []
    if not isinstance(raw, list):
        raise InvalidInputError(f"{name}: must be a list of [x0, y0, x1, y1] boxes in pixels, person 1 first")
    return [parse_box(box, f"{name}[{index}]") for index, box in enumerate(raw)]


def parse_box(box: Any, name: str) -> list[int]:
    if (not isinstance(box, list | tuple) or len(box) != 4
            or any(isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) for v in box)):
        raise InvalidInputError(f"{name}: must be [x0, y0, x1, y1], four numbers in pixels of the image, got {box!r}")
    return [round(value) for value in box]


@dataclass
class SpeakerRequest:
    """What a request says about its speakers, whichever API it came through."""

    count: int = 0  # 0: one speaker
    boxes: list[list[int]] = field(default_factory=list)
    # Each speaker's audio URL from a `speakers` list ("" = sent as a file, or none given).
    audio_urls: list[str] = field(default_factory=list)


def speakers_from_request(entries: Any, boxes: Any, second_audio: bool, stereo: bool) -> SpeakerRequest:
    """Read `speakers` (a list of {"audio_url", "box"}, person 1 first) or `boxes` plus the presence
    of person 2's recording / a stereo recording into a SpeakerRequest."""
    given_boxes = parse_boxes(boxes)
    if entries is None or entries == []:
        count = 2 if second_audio or stereo else len(given_boxes) if len(given_boxes) >= 2 else 0
        return SpeakerRequest(count, given_boxes)
    if not isinstance(entries, list) or not all(isinstance(entry, dict) for entry in entries):
        raise InvalidInputError('speakers: must be a list of {"audio_url": ..., "box": [x0, y0, x1, y1]}, '
                                "person 1 first")
    if given_boxes:
        raise InvalidInputError("boxes, speakers: give the boxes in one of them (speakers[i].box), not both")
    request = SpeakerRequest(count=len(entries))
    for index, entry in enumerate(entries):
        unknown = set(entry) - {"audio_url", "box"}
        if unknown:
            raise InvalidInputError(f"speakers[{index}]: unknown field(s) {', '.join(sorted(unknown))}; "
                                    "known: audio_url, box")
        url = entry.get("audio_url") or ""
        if not isinstance(url, str):
            raise InvalidInputError(f"speakers[{index}].audio_url: must be a string")
        request.audio_urls.append(url.strip())
        if entry.get("box") is not None:
            request.boxes.append(parse_box(entry["box"], f"speakers[{index}].box"))
    if request.boxes and len(request.boxes) != request.count:
        raise InvalidInputError("speakers: give a box for every speaker or for none")
    if request.count == 1:
        raise InvalidInputError("speakers: list two speakers, person 1 first (one speaker needs no list)")
    return request


def speaker_audio_urls(request: SpeakerRequest, audio_url: str, audio_2_url: str) -> tuple[str, str]:
    """Person 1's and person 2's audio URLs: the top-level fields, or the speakers list's."""
    urls = [audio_url, audio_2_url]
    for index, url in enumerate(request.audio_urls[:2]):
        if url and urls[index]:
            top = "audio_url" if index == 0 else "audio_2_url"
            raise InvalidInputError(f"{top}, speakers[{index}].audio_url: send one of them, not both")
        urls[index] = urls[index] or url
    return urls[0], urls[1]


def apply_speakers(options: JobOptions, request: SpeakerRequest, audio_type: str = "",
                   stereo: bool = False) -> JobOptions:
    options.speakers, options.boxes = request.count, request.boxes
    options.audio_type, options.stereo_speakers = (audio_type or "").strip(), stereo
    return options


def check_speaker_options(options: JobOptions) -> None:
    """What can be checked without the files: counts, audio_type, boxes' shape."""
    count = options.speakers
    if count >= 2 and options.boxes and len(options.boxes) != count:
        raise InvalidInputError(
            f"boxes: {count} speakers' tracks for {len(options.boxes)} box(es); give one box per speaker, "
            "person 1 first, or none to use the portrait's faces")
    if count > MAX_SPEAKERS:
        raise InvalidInputError(
            f"speakers: {count} speakers' tracks given; a video has one speaker or two (person 1 and person 2)")
    if count < 2:
        for name, value in (("audio_type", options.audio_type), ("stereo_speakers", options.stereo_speakers),
                            ("boxes", options.boxes)):
            if value:
                raise InvalidInputError(f"{name}: only for two speakers (send audio_2, speakers, or "
                                        "stereo_speakers with a two-channel recording)")
        return
    if options.audio_type not in ("", *AUDIO_TYPES):
        raise InvalidInputError(f"audio_type: must be para or add, got {options.audio_type!r}")


def image_rgb(path: Path) -> np.ndarray | None:
    """The portrait as RGB, or None when the reference is not a still image."""
    decoded = cv2.imdecode(np.fromfile(str(path), dtype=np.uint8), cv2.IMREAD_COLOR)
    return None if decoded is None else cv2.cvtColor(decoded, cv2.COLOR_BGR2RGB)


def resolve_boxes(options: JobOptions, image: Path, faces: FaceFinder) -> None:
    """Check the given boxes against the portrait, or detect the faces as the boxes (in place)."""
    rgb = image_rgb(image)
    if rgb is None:
        raise InvalidInputError("image: a two-speaker job needs a still portrait (PNG, JPEG, ...), not a video")
    height, width = rgb.shape[:2]
    options.image_size = [width, height]
    if options.boxes:
        for index, (x0, y0, x1, y1) in enumerate(options.boxes):
            if not (0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height):
                raise InvalidInputError(
                    f"boxes[{index}]: [{x0}, {y0}, {x1}, {y1}] is not a box inside the {width}x{height} image "
                    f"(need 0 <= x0 < x1 <= {width} and 0 <= y0 < y1 <= {height}, in pixels)")
        options.boxes_from = BOXES_FROM_REQUEST
        return
    found = faces.find_all(rgb)
    if len(found) != options.speakers:
        raise InvalidInputError(
            f"image: {len(found)} face(s) found in the portrait but {options.speakers} speakers' tracks given; "
            "draw one box per speaker (boxes), person 1 first")
    options.boxes = [list(face.as_tuple()) for face in found]  # left to right
    options.boxes_from = BOXES_FROM_FACES


def chunk_persons(options: JobOptions) -> list[generator_pb2.Person]:
    """ChunkSpec.persons for a job: its boxes as fractions of the image (empty for one speaker)."""
    if options.speakers < 2:
        return []
    if not options.boxes:
        return [generator_pb2.Person() for _ in range(options.speakers)]
    width, height = options.image_size
    return [generator_pb2.Person(x0=x0 / width, y0=y0 / height, x1=x1 / width, y1=y1 / height)
            for x0, y0, x1, y1 in options.boxes]


def check_pool_renders(pool_name: str, served: set[int] | None, speakers: int) -> None:
    """A clear 400 when the job's pool has generators and none renders this many speakers."""
    needed = max(1, speakers)
    if served is not None and needed not in served:
        counts = ", ".join(str(count) for count in sorted(served))
        raise InvalidInputError(
            f"provider: the generators of pool {pool_name!r} render {counts} person(s) per video, not {needed}; "
            "send two-speaker jobs to a pool whose generators render two people")
