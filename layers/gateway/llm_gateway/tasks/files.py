"""The gateway's own storage of task images: a folder (`.gateway/files/` by default) or, with
`GATEWAY_FILES_URL=s3://bucket/prefix`, an S3 bucket. A file is named by an unguessable id; a
variant (resized / converted, see `images`) is stored beside it under a name derived from its
parameters, so each is made once and kept.

On AWS the public file route does not carry the bytes: it answers 302 to a short-lived presigned
URL of the object (`S3Files.link`), so S3 serves them. A buffered Lambda answer is at most 6 MB,
base64-encoded through API Gateway (a third more), and an upscaled Midjourney PNG can pass 4.5 MB;
the redirect also spares a function invocation's duration per download and gives ranges and
conditional requests for free. Locally the route serves the bytes itself.
"""

from __future__ import annotations

import os
import re
import secrets
from typing import Any, Protocol

from ..config import Settings

DEFAULT_FOLDER = ".gateway/files"
FILE_ID = re.compile(r"[A-Za-z0-9_-]{32}")
# a year: a stored file never changes (a new image gets a new id)
IMMUTABLE = "public, max-age=31536000, immutable"

_SIGNATURES = ((b"\x89PNG\r\n\x1a\n", "image/png"), (b"\xff\xd8\xff", "image/jpeg"), (b"GIF8", "image/gif"))


def new_file_id() -> str:
    return secrets.token_urlsafe(24)  # 192 random bits, 32 URL-safe characters


def content_type(data: bytes) -> str:
    """An image's type from its first bytes (what was stored is what is served)."""
    for signature, kind in _SIGNATURES:
        if data.startswith(signature):
            return kind
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return "application/octet-stream"


class Files(Protocol):
    def put(self, name: str, data: bytes) -> None: ...
    def get(self, name: str) -> bytes | None: ...


class FolderFiles:
    def __init__(self, root: str) -> None:
        self.root = os.path.abspath(root)

    def _path(self, name: str) -> str:
        return os.path.join(self.root, *name.split("/"))

    def put(self, name: str, data: bytes) -> None:
        path = self._path(name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        partial = f"{path}.{secrets.token_hex(4)}.part"
        with open(partial, "wb") as out:
            out.write(data)
        os.replace(partial, path)  # readers see the whole file or none

    def get(self, name: str) -> bytes | None:
        try:
            with open(self._path(name), "rb") as f:
                return f.read()
        except FileNotFoundError:
            return None


class S3Files:
    """Objects under `prefix` in `bucket` (server-side encrypted by the bucket's default). Reading a
    missing object is None only with s3:ListBucket on the prefix (without it S3 answers 403)."""

    LINK_SECONDS = 3600  # how long a presigned link works (a redirect to it is cached far less)

    def __init__(self, bucket: str, prefix: str, client: Any = None) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self._client = client

    @property
    def client(self) -> Any:
        if self._client is None:
            from botocore.config import Config

            from ..awsclients import client

            # presigned links signed with SigV4 (buckets made since 2020 refuse SigV2 links)
            self._client = client("s3", config=Config(signature_version="s3v4"))
        return self._client

    def _key(self, name: str) -> str:
        return f"{self.prefix}/{name}" if self.prefix else name

    def put(self, name: str, data: bytes) -> None:
        self.client.put_object(Bucket=self.bucket, Key=self._key(name), Body=data, ContentType=content_type(data),
                               CacheControl=IMMUTABLE)

    def get(self, name: str) -> bytes | None:
        try:
            return self.client.get_object(Bucket=self.bucket, Key=self._key(name))["Body"].read()
        except self.client.exceptions.NoSuchKey:
            return None

    def exists(self, name: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.head_object(Bucket=self.bucket, Key=self._key(name))
        except ClientError as err:
            if err.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise
        return True

    def link(self, name: str) -> str:
        """A presigned GET of the object, valid LINK_SECONDS (no call to S3: signed here)."""
        return str(self.client.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": self._key(name)}, ExpiresIn=self.LINK_SECONDS))


def open_files(settings: Settings) -> Files:
    """The storage `GATEWAY_FILES_URL` names: `s3://bucket/prefix`, `file:///path` or a path."""
    url = settings.secret("GATEWAY_FILES_URL") or DEFAULT_FOLDER
    if url.startswith("s3://"):
        bucket, _, prefix = url[len("s3://"):].partition("/")
        return S3Files(bucket, prefix)
    return FolderFiles(url[len("file://"):] if url.startswith("file://") else url)
