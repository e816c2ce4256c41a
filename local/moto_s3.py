"""S3 as the real service takes a PUT: the body is the object, whatever its Content-Type.

moto reads a PUT whose Content-Type is a form type (`application/x-www-form-urlencoded`, curl's
default for `--data-binary`, or `multipart/form-data`) as a browser form and stores an empty
object, so a call list uploaded that way was "empty". `keep_put_bodies()` makes moto keep such a
body as the object's bytes, as S3 does; the local stack applies it in moto's process."""

from __future__ import annotations

from typing import Any

FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
_applied = False


def keep_put_bodies() -> None:
    global _applied
    if _applied:
        return
    from moto.s3.responses import S3Response
    from werkzeug.datastructures import ImmutableMultiDict

    original = S3Response.setup_class

    def setup_class(self: Any, request: Any, *args: Any, **kwargs: Any) -> None:
        if request.method == "PUT" and request.mimetype in FORM_TYPES:
            request.get_data(cache=True, parse_form_data=False)  # the raw bytes, before any form parsing
            request.__dict__["form"] = ImmutableMultiDict()
            request.__dict__["files"] = ImmutableMultiDict()
        original(self, request, *args, **kwargs)

    S3Response.setup_class = setup_class  # type: ignore[method-assign]
    _applied = True
