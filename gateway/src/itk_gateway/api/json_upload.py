"""POST /jobs as JSON, parsed as it arrives: the base64 media are decoded straight into the Upload.

A seed client sends `{"image_base64": "...", "audio_base64": "...", "width": ...}` with media of
up to MAX_UPLOAD_MB. Reading that whole document, parsing it and decoding it would hold about four
times its size in memory; this push parser holds one network chunk. It accepts exactly one JSON
object. The two media strings are decoded in 4-character groups as they stream by (whitespace,
JSON escapes and a `data:...;base64,` prefix tolerated, as before); every other member is small
(at most MAX_MEMBER_BYTES) and is handed to `json.loads` with NaN and Infinity refused and its
nesting bounded, so no document can make the parser recurse deeply or allocate without limit.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable
from typing import Any

from itk_gateway.errors import InvalidInputError, InvalidJsonError

STREAMED = {"image_base64": "image", "audio_base64": "audio", "audio_2_base64": "audio_2"}
# What the document's members hold for a media string that went to the upload (an empty one
# stays "": absent, as when a URL is sent instead).
STREAMED_VALUE = "(streamed)"
MAX_MEMBER_BYTES = 64 * 1024
MAX_KEY_BYTES = 256
MAX_DEPTH = 32
MAX_MEMBERS = 64
# Longest `data:<media type>;base64,` prefix looked for at the start of a media string.
DATA_URL_PROBE = 256
_WS = re.compile(rb"[ \t\r\n]*")
_STRING_STOP = re.compile(rb'["\\]')
_DATA_URL = re.compile(rb"^data:[\w/+.-]+;base64,", re.IGNORECASE)
_B64_WHITESPACE = b" \t\r\n\f\v"
_ESCAPES = {b'"': b'"', b"\\": b"\\", b"/": b"/", b"b": b"\b", b"f": b"\f", b"n": b"\n", b"r": b"\r", b"t": b"\t"}

(START, KEY_OR_END, KEY, COLON, VALUE, SMALL, MEDIA, AFTER_VALUE, NEXT_KEY, END) = range(10)


def _no_constants(name: str) -> Any:
    raise InvalidJsonError(f"invalid JSON body: {name} is not a JSON number")


class _Base64Sink:
    """Decodes one media string as it arrives and passes the bytes on."""

    def __init__(self, field: str, write: Callable[[bytes], None]) -> None:
        self.field = field
        self.write = write
        self.head = b""  # until the data-URL prefix is decided
        self.probing = True
        self.pending = b""
        self.seen_text = False
        # A bad media string is reported once the whole document was read: a document that is
        # not JSON at all is INVALID_JSON first, whatever its strings hold.
        self.error: InvalidInputError | None = None

    def feed(self, text: bytes) -> None:
        if self.error is not None:
            return
        if self.probing:
            self.head += text
            if len(self.head) < DATA_URL_PROBE:
                return
            text = self._end_probe()
        self._decode(text)

    def _end_probe(self) -> bytes:
        self.probing = False
        match = _DATA_URL.match(self.head)
        rest = self.head[match.end():] if match else self.head
        self.head = b""
        return rest

    def _decode(self, text: bytes) -> None:
        compact = self.pending + text.translate(None, _B64_WHITESPACE)
        if compact:
            self.seen_text = True
        usable = len(compact) - len(compact) % 4
        self.pending = compact[usable:]
        if usable:
            try:
                data = base64.b64decode(compact[:usable], validate=True)
            except binascii.Error as exc:
                self.error = InvalidInputError(f"{self.field}: not valid base64 ({exc})")
                return
            if data:
                self.write(data)

    def close(self) -> None:
        if self.probing and self.error is None:
            self._decode(self._end_probe())
        if self.error is not None:
            return
        if self.seen_text and self.pending:
            self.error = InvalidInputError(f"{self.field}: not valid base64 (Incorrect padding)")


class JsonUploadParser:
    """Feed the body's bytes in any pieces; `finish()` returns the document's small members.

    `write(kind, data)` receives the decoded media ("image" or "audio") as they arrive.
    """

    def __init__(self, write: Callable[[str, bytes], None]) -> None:
        self._write = write
        self._buf = b""
        self._state = START
        self._key = ""
        self._members: dict[str, Any] = {}
        self._media: _Base64Sink | None = None
        self._media_errors: list[InvalidInputError] = []
        self._escape = b""
        # For small values: where the value started in _value, nesting, string state.
        self._value = bytearray()
        self._depth = 0
        self._in_string = False
        self._escaped = False

    def feed(self, data: bytes) -> None:
        self._buf = self._buf + data if self._buf else data
        pos = 0
        while pos < len(self._buf):
            new_pos = self._step(pos)
            if new_pos is None:
                break  # needs more data
            pos = new_pos
        self._buf = self._buf[pos:]

    def finish(self) -> dict[str, Any]:
        if self._state == SMALL and self._depth == 0 and not self._in_string and self._value:
            self._end_small()
        self.feed(b"")
        if self._state != END or self._buf.strip():
            raise InvalidJsonError("invalid JSON body: the document is incomplete")
        if self._media_errors:
            raise self._media_errors[0]
        return self._members

    # -- the states --------------------------------------------------------------------

    def _skip_ws(self, pos: int) -> int:
        match = _WS.match(self._buf, pos)
        assert match is not None
        return match.end()

    def _step(self, pos: int) -> int | None:
        buf = self._buf
        state = self._state
        if state == MEDIA:
            return self._step_media(pos)
        if state == SMALL:
            return self._step_small(pos)
        pos = self._skip_ws(pos)
        if pos >= len(buf):
            return pos
        char = buf[pos:pos + 1]
        if state == START:
            if char != b"{":
                raise InvalidJsonError("invalid JSON body: expected a JSON object")
            self._state = KEY_OR_END
            return pos + 1
        if state in (KEY_OR_END, NEXT_KEY):
            if char == b"}" and state == KEY_OR_END:
                self._state = END
                return pos + 1
            if char != b'"':
                raise InvalidJsonError("invalid JSON body: expected a member name")
            end = self._string_end(pos + 1)
            if end is None:
                if len(buf) - pos > MAX_KEY_BYTES:
                    raise InvalidJsonError("invalid JSON body: a member name is too long")
                return None
            try:
                self._key = json.loads(buf[pos:end + 1])
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise InvalidJsonError("invalid JSON body: a malformed member name") from exc
            if self._key in self._members:
                raise InvalidInputError(f"{self._key}: given twice")
            if len(self._members) >= MAX_MEMBERS:
                raise InvalidInputError(f"the JSON object has more than {MAX_MEMBERS} members")
            self._state = COLON
            return end + 1
        if state == COLON:
            if char != b":":
                raise InvalidJsonError("invalid JSON body: expected ':' after a member name")
            self._state = VALUE
            return pos + 1
        if state == VALUE:
            if self._key in STREAMED and char == b'"':
                kind = STREAMED[self._key]
                self._media = _Base64Sink(self._key, lambda data: self._write(kind, data))
                self._members[self._key] = ""  # present; its bytes went to the upload
                self._state = MEDIA
                return pos + 1
            self._value = bytearray()
            self._depth = 0
            self._in_string = self._escaped = False
            self._state = SMALL
            return pos
        if state == AFTER_VALUE:
            if char == b",":
                self._state = NEXT_KEY
                return pos + 1
            if char == b"}":
                self._state = END
                return pos + 1
            raise InvalidJsonError("invalid JSON body: expected ',' or '}' after a value")
        # END: only whitespace may follow.
        raise InvalidJsonError("invalid JSON body: data after the JSON object")

    def _string_end(self, pos: int) -> int | None:
        """Index of the closing quote of a string starting at `pos` (just after its opening quote)."""
        buf = self._buf
        while True:
            match = _STRING_STOP.search(buf, pos)
            if match is None:
                return None
            if buf[match.start():match.start() + 1] == b'"':
                return match.start()
            pos = match.start() + 2
            if pos > len(buf):
                return None

    def _step_media(self, pos: int) -> int | None:
        buf = self._buf
        assert self._media is not None
        if self._escape:
            # An escape split across pieces: \uXXXX needs 4 more characters after the u.
            while pos < len(buf):
                need = 6 if self._escape[1:2] == b"u" else 2
                if len(self._escape) >= need:
                    break
                self._escape += buf[pos:pos + 1]
                pos += 1
            need = 6 if self._escape[1:2] == b"u" else 2
            if len(self._escape) == need:
                self._media.feed(self._unescape(self._escape))
                self._escape = b""
            return pos
        match = _STRING_STOP.search(buf, pos)
        if match is None:
            self._media.feed(buf[pos:])
            return len(buf)
        self._media.feed(buf[pos:match.start()])
        if buf[match.start():match.start() + 1] == b'"':
            self._media.close()
            if self._media.error is not None:
                self._media_errors.append(self._media.error)
            if self._media.seen_text:
                self._members[self._media.field] = STREAMED_VALUE
            self._media = None
            self._state = AFTER_VALUE
            return match.start() + 1
        # A backslash: collect its escape (possibly across pieces) in the branch above.
        self._escape = b"\\"
        return match.start() + 1

    def _unescape(self, escape: bytes) -> bytes:
        if escape[1:2] == b"u":
            try:
                return chr(int(escape[2:6], 16)).encode("utf-8")
            except ValueError as exc:
                raise InvalidJsonError("invalid JSON body: a malformed \\u escape") from exc
        replacement = _ESCAPES.get(escape[1:2])
        if replacement is None:
            raise InvalidJsonError("invalid JSON body: a malformed escape")
        return replacement

    def _step_small(self, pos: int) -> int | None:
        """Copy one small value's bytes, tracking strings and nesting, until it ends."""
        buf = self._buf
        start = pos
        end = len(buf)
        while pos < end:
            byte = buf[pos]
            if self._in_string:
                if self._escaped:
                    self._escaped = False
                elif byte == 0x5C:  # backslash
                    self._escaped = True
                elif byte == 0x22:  # quote
                    self._in_string = False
                    if self._depth == 0:
                        pos += 1
                        self._append(buf[start:pos])
                        self._end_small()
                        return pos
            elif byte == 0x22:
                self._in_string = True
            elif byte in (0x7B, 0x5B):  # { [
                self._depth += 1
                if self._depth > MAX_DEPTH:
                    raise InvalidJsonError(f"invalid JSON body: nested deeper than {MAX_DEPTH} levels")
            elif byte in (0x7D, 0x5D):  # } ]
                if self._depth == 0:
                    break  # the end of the enclosing object: the scalar before it is complete
                self._depth -= 1
                if self._depth == 0:
                    pos += 1
                    self._append(buf[start:pos])
                    self._end_small()
                    return pos
            elif self._depth == 0 and byte in (0x2C, 0x20, 0x09, 0x0A, 0x0D):  # , and whitespace
                break
            pos += 1
            if pos - start + len(self._value) > MAX_MEMBER_BYTES:
                raise InvalidInputError(f"{self._key}: value larger than {MAX_MEMBER_BYTES // 1024} KiB")
        self._append(buf[start:pos])
        if pos < end:
            self._end_small()
        return pos

    def _append(self, data: bytes) -> None:
        self._value += data
        if len(self._value) > MAX_MEMBER_BYTES:
            raise InvalidInputError(f"{self._key}: value larger than {MAX_MEMBER_BYTES // 1024} KiB")

    def _end_small(self) -> None:
        try:
            value = json.loads(bytes(self._value), parse_constant=_no_constants)
        except InvalidJsonError:
            raise
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
            raise InvalidJsonError(f"invalid JSON body: malformed value of {self._key!r}") from exc
        self._members[self._key] = value
        self._value = bytearray()
        self._state = AFTER_VALUE
