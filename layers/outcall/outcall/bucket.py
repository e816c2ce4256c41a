"""The call-list bucket: uploads under `imports/`, the import's working files under `work/`
(expired by a lifecycle rule), row-level reports under `reports/`. The only code that talks to S3."""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator
from functools import lru_cache
from typing import IO, Any

import boto3
from botocore.exceptions import ClientError

from outcall.errors import NotFound


@lru_cache(maxsize=1)
def _s3() -> Any:
    return boto3.client("s3")


def reset_clients() -> None:
    """Forget the cached client (tests switch AWS endpoints between cases)."""
    _s3.cache_clear()


class _Chain(io.RawIOBase):
    """Several byte sources read one after the other, as one stream (for a streaming upload)."""

    def __init__(self, parts: Iterable[bytes | IO[bytes]]) -> None:
        self._parts: Iterator[bytes | IO[bytes]] = iter(parts)
        self._current: IO[bytes] | None = None

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while True:
            if self._current is None:
                part = next(self._parts, None)
                if part is None:
                    return 0
                self._current = io.BytesIO(part) if isinstance(part, bytes) else part
            data = self._current.read(len(buffer))
            if data:
                buffer[: len(data)] = data
                return len(data)
            self._current = None


class CallListBucket:
    def __init__(self, name: str, client: Any = None) -> None:
        self.name = name
        self._client = client

    @property
    def client(self) -> Any:
        return self._client or _s3()

    def open(self, key: str, version: str | None = None) -> tuple[IO[bytes], int]:
        """A streaming body of the object (read as it arrives, never held whole) and its size."""
        kwargs: dict[str, Any] = {"Bucket": self.name, "Key": key}
        if version:
            kwargs["VersionId"] = version
        try:
            answer = self.client.get_object(**kwargs)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "NoSuchVersion", "404"):
                raise NotFound(f"the uploaded file {key!r} is gone") from exc
            raise
        return answer["Body"], int(answer.get("ContentLength", 0))

    def put(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        self.client.put_object(Bucket=self.name, Key=key, Body=data, ContentType=content_type)

    def read(self, key: str) -> bytes:
        return bytes(self.client.get_object(Bucket=self.name, Key=key)["Body"].read())

    def upload(self, key: str, parts: Iterable[bytes | IO[bytes]], content_type: str) -> None:
        """Upload the parts, in order, as one object, streaming (multipart when large)."""
        stream = io.BufferedReader(_Chain(parts), 1 << 20)
        self.client.upload_fileobj(stream, self.name, key, ExtraArgs={"ContentType": content_type})

    def body(self, key: str) -> IO[bytes]:
        body: IO[bytes] = self.client.get_object(Bucket=self.name, Key=key)["Body"]
        return body

    def presigned_put(self, key: str, expires_in: int) -> str:
        return str(
            self.client.generate_presigned_url(
                "put_object", Params={"Bucket": self.name, "Key": key}, ExpiresIn=expires_in, HttpMethod="PUT"
            )
        )

    def presigned_get(self, key: str, expires_in: int, download_name: str | None = None) -> str:
        params: dict[str, Any] = {"Bucket": self.name, "Key": key}
        if download_name:
            params["ResponseContentDisposition"] = f'attachment; filename="{download_name}"'
        return str(self.client.generate_presigned_url("get_object", Params=params, ExpiresIn=expires_in))
