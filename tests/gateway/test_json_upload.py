"""The streaming JSON parser of uploads agrees with json.loads + base64, however the body is cut."""

from __future__ import annotations

import base64
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from itk_gateway.api.json_upload import MAX_DEPTH, JsonUploadParser
from itk_gateway.errors import ApiError, InvalidInputError, InvalidJsonError

small_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10**12, 10**12) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)


def parse(body: bytes, cuts: list[int]) -> tuple[dict, dict[str, bytes]]:
    media: dict[str, bytes] = {"image": b"", "audio": b""}

    def write(kind: str, data: bytes) -> None:
        media[kind] += data

    parser = JsonUploadParser(write)
    start = 0
    for cut in [*sorted(set(cuts)), len(body)]:
        parser.feed(body[start:cut])
        start = max(start, cut)
    return parser.finish(), media


@settings(max_examples=150, deadline=None)
@given(image=st.binary(min_size=1, max_size=300), audio=st.binary(min_size=1, max_size=300),
       extra=st.dictionaries(st.sampled_from(["width", "height", "prompt", "sampling", "seed", "x"]), small_values,
                             max_size=5),
       data_url=st.booleans(), wrap=st.booleans(), escape_slashes=st.booleans(), ascii_only=st.booleans(),
       cuts=st.lists(st.integers(0, 2000), max_size=12))
def test_agrees_with_json_and_base64(image: bytes, audio: bytes, extra: dict, data_url: bool, wrap: bool,
                                     escape_slashes: bool, ascii_only: bool, cuts: list[int]) -> None:
    encode = base64.encodebytes if wrap else base64.b64encode  # line breaks, as `base64` writes them
    image_text = ("data:image/png;base64," if data_url else "") + encode(image).decode()
    document = {**extra, "image_base64": image_text, "audio_base64": encode(audio).decode()}
    body = json.dumps(document, ensure_ascii=ascii_only)
    if escape_slashes:
        body = body.replace("/", "\\/")
    members, media = parse(body.encode(), cuts)
    assert media == {"image": image, "audio": audio}
    assert {k: v for k, v in members.items() if not k.endswith("_base64")} == json.loads(
        json.dumps({k: v for k, v in extra.items()}))


@pytest.mark.parametrize(("body", "error", "words"), [
    (b'{"a": ' + b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1) + b"}", InvalidJsonError, "nested"),
    (b'{"a": NaN}', InvalidJsonError, "NaN"),
    (b'{"a": 1, "a": 2}', InvalidInputError, "twice"),
    (b'{"image_base64": "QUJD\\u0052A=="}', None, ""),
    (b'{"image_base64": "QUJDRA="}', InvalidInputError, "base64"),
    (b'{"image_base64": "    "}', None, ""),  # empty: absent (an image_url may stand for it)
    (b'{"image_base64": "===="}', InvalidInputError, "base64"),
    (b'{"image_base64": ""}', None, ""),
    (b'{"prompt": "' + b"x" * 70_000 + b'"}', InvalidInputError, "larger than"),
    (b'{"a": 1}{', InvalidJsonError, "after"),
    (b'{"a" : 1 , "b" : [ 1 , 2 ] }  ', None, ""),
])
def test_edges(body: bytes, error: type[ApiError] | None, words: str) -> None:
    for cuts in ([], list(range(len(body)))):  # whole, and one byte at a time
        if error is None:
            parse(body, cuts)
            continue
        with pytest.raises(error) as raised:
            parse(body, cuts)
        assert words in raised.value.message
