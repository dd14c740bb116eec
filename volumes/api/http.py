"""Streaming file responses with single-range support, and raw request bodies."""
from __future__ import annotations

import io
import mimetypes
import re

from django.core.handlers.asgi import ASGIRequest
from django.http import HttpResponse, JsonResponse, QueryDict, StreamingHttpResponse
from django.utils.http import content_disposition_header
from rest_framework.parsers import BaseParser

from ..exceptions import LengthRequired, VolumesError
from ..services import files

MAX_RANGES = 10
_SPEC = re.compile(r"^\s*(\d*)\s*-\s*(\d*)\s*$")


class RangeNotSatisfiable(VolumesError):
    code = "range_not_satisfiable"
    status = 416


def parse_range(header: str, size: int) -> tuple[int, int] | None:
    """The one range [start, end] (inclusive) to send, or None to send the whole file.

    Malformed headers and several ranges are ignored (RFC 9110 allows that); more than
    MAX_RANGES ranges or a range wholly past the end is refused with 416."""
    if not header:
        return None
    unit, _, specs = header.partition("=")
    if unit.strip().lower() != "bytes" or not specs:
        return None
    parts = specs.split(",")
    if len(parts) > MAX_RANGES:
        raise RangeNotSatisfiable(f"at most {MAX_RANGES} ranges per request", size=size)
    ranges = []
    for part in parts:
        match = _SPEC.match(part)
        if not match or match.groups() == ("", ""):
            return None
        first, last = match.groups()
        if first:
            start = int(first)
            end = int(last) if last else size - 1
            if last and end < start:
                return None
            if start >= size:
                continue  # unsatisfiable on its own
            ranges.append((start, min(end, size - 1)))
        else:
            suffix = int(last)
            if suffix == 0 or size == 0:
                continue
            ranges.append((max(0, size - suffix), size - 1))
    if not ranges:
        raise RangeNotSatisfiable(f"the range {specs[:100]!r} is outside the file's {size} bytes", size=size)
    if len(ranges) > 1:
        return None
    return ranges[0]


def file_response(request, volume, entry) -> HttpResponse:
    """A download of one file: streamed, typed by its name, never rendered by the browser."""
    name = entry.path.rpartition("/")[2]
    content_type, encoding = mimetypes.guess_type(name)
    if encoding or not content_type:
        content_type = "application/octet-stream"  # a .gz is sent as it is stored, not decoded
    etag = f'"{entry.hash}"'
    byte_range = None
    if_range = request.headers.get("If-Range")
    if not if_range or if_range.strip() == etag:
        try:
            byte_range = parse_range(request.headers.get("Range", ""), entry.size)
        except RangeNotSatisfiable as exc:
            refused = JsonResponse({"error": exc.code, "detail": exc.message}, status=416)
            refused["Content-Range"] = f"bytes */{entry.size}"
            return refused
    if byte_range is None:
        body, status, length = files.open_file(volume, entry), 200, entry.size
    else:
        start, end = byte_range
        body, status, length = files.open_file(volume, entry, start, end + 1), 206, end - start + 1
    if request.method == "HEAD":
        body = iter(())
    response = StreamingHttpResponse(body, status=status, content_type=content_type)
    if status == 206:
        response["Content-Range"] = f"bytes {byte_range[0]}-{byte_range[1]}/{entry.size}"
    response["Content-Length"] = str(length)
    response["Accept-Ranges"] = "bytes"
    response["ETag"] = etag
    response["Content-Disposition"] = content_disposition_header(True, name)
    response["X-Content-Type-Options"] = "nosniff"
    response["Content-Security-Policy"] = "sandbox"
    response["Cache-Control"] = "private, no-cache"
    return response


class RawBodyParser(BaseParser):
    """Declares that a view takes any body as bytes. Views read `request.stream` themselves,
    so the body is never loaded into memory; this parser only exists for the schema."""

    media_type = "*/*"

    def parse(self, stream, media_type=None, parser_context=None):
        # Only reached when something asks for request.data or request.POST (the session CSRF check
        # does): the body is a file, never form fields. Leave the stream unread for the view.
        return QueryDict()


def body_stream(request):
    """The request body as a file-like object, read in chunks by the caller.

    With a Content-Length, Django's stream reads exactly that many bytes. Without one (a chunked
    upload), Django would read nothing: the body is streamed only when the server decoded the
    chunks and ends the input itself (`wsgi.input_terminated`, or an ASGI server); otherwise 411,
    so a chunked upload never becomes an empty file."""
    meta = request.META
    django_request = getattr(request, "_request", request)  # under a DRF Request
    if meta.get("CONTENT_LENGTH", "").strip() or not meta.get("HTTP_TRANSFER_ENCODING", "").strip():
        if django_request is request:
            return request  # Django's request reads its body like a file (nothing without a length)
        stream = request.stream
        return stream if stream is not None else io.BytesIO(b"")
    if isinstance(django_request, ASGIRequest):
        return django_request  # the ASGI handler has read the whole body
    if meta.get("wsgi.input_terminated"):
        return meta["wsgi.input"]
    raise LengthRequired(
        "this server needs a Content-Length for uploads: send the file with its length "
        "(curl -T FILE or --data-binary @FILE without 'Transfer-Encoding: chunked')"
    )
