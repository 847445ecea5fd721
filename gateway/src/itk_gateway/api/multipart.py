"""Streaming a multipart/form-data request straight into an Upload (no temp copies, no base64).

python-multipart's push parser calls back per part; file parts named `image`, `audio` and `audio_2` are
written to the job's folder as they arrive, other parts are small text fields.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.concurrency import run_in_threadpool

from itk_gateway.errors import ApiError, InvalidInputError
from itk_gateway.jobs.service import Upload

FILE_FIELDS = ("image", "audio", "audio_2")
MAX_FIELD_BYTES = 64 * 1024


class _FormSink:
    def __init__(self, upload: Upload) -> None:
        self.upload = upload
        self.fields: dict[str, str] = {}
        self.error: Exception | None = None
        self._header_field = b""
        self._header_value = b""
        self._headers: dict[bytes, bytes] = {}
        self._name = ""
        self._value = bytearray()
        self._seen: set[str] = set()

    def callbacks(self) -> dict:
        return {
            "on_part_begin": self.on_part_begin,
            "on_header_field": lambda data, start, end: self._append_header("_header_field", data[start:end]),
            "on_header_value": lambda data, start, end: self._append_header("_header_value", data[start:end]),
            "on_header_end": self.on_header_end,
            "on_headers_finished": self.on_headers_finished,
            "on_part_data": self.on_part_data,
            "on_part_end": self.on_part_end,
        }

    def _append_header(self, attribute: str, data: bytes) -> None:
        setattr(self, attribute, getattr(self, attribute) + data)

    def on_part_begin(self) -> None:
        self._headers = {}
        self._name = ""
        self._value = bytearray()

    def on_header_end(self) -> None:
        self._headers[self._header_field.strip().lower()] = self._header_value.strip()
        self._header_field = b""
        self._header_value = b""

    def on_headers_finished(self) -> None:
        _, params = parse_options_header(self._headers.get(b"content-disposition", b""))
        self._name = params.get(b"name", b"").decode("utf-8", "replace")
        if not self._name:
            raise InvalidInputError("multipart part without a name")
        if self._name in self._seen:
            # A second `audio` part would otherwise be appended to the first one's file.
            raise InvalidInputError(f"{self._name}: sent more than once")
        self._seen.add(self._name)

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self._name in FILE_FIELDS:
            self.upload.write(self._name, data[start:end])
            return
        self._value += data[start:end]
        if len(self._value) > MAX_FIELD_BYTES:
            raise InvalidInputError(f"{self._name}: form field longer than {MAX_FIELD_BYTES} bytes")

    def on_part_end(self) -> None:
        if self._name and self._name not in FILE_FIELDS:
            self.fields[self._name] = self._value.decode("utf-8", "replace")


async def receive_form(content_type: str, body: AsyncIterator[bytes], upload: Upload) -> dict[str, str]:
    """Parse the body into `upload` (files) and return the text fields."""
    _, params = parse_options_header(content_type)
    boundary = params.get(b"boundary")
    if not boundary:
        raise InvalidInputError("multipart/form-data body without a boundary")
    sink = _FormSink(upload)
    parser = MultipartParser(boundary, sink.callbacks())
    try:
        async for data in body:
            if data:
                # File writes block, so they run off the event loop.
                await run_in_threadpool(parser.write, data)
        parser.finalize()
    except ApiError:
        raise
    except Exception as exc:  # python-multipart's parse errors
        raise InvalidInputError(f"malformed multipart body: {exc}") from exc
    return sink.fields
