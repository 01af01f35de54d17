"""The S3 backend of the result store: `s3://bucket/prefix` through boto3, any S3-compatible
server (MinIO, Ceph) through AWS_ENDPOINT_URL."""

from __future__ import annotations

import os
from collections.abc import Iterable

from results.store.base import NotFound, Store, StoreError, StoreUnreachable
from results.store.reader import _one_line
from trainers.errors import GridError


class S3Store(Store):
    """`s3://bucket/prefix` through boto3: the endpoint from AWS_ENDPOINT_URL (any S3
    compatible server), credentials from boto3's standard chain, never logged or stored."""

    def __init__(self, uri: str):
        import boto3
        from botocore.config import Config

        self.uri = uri.rstrip("/")
        bucket, _, prefix = uri[len("s3://") :].partition("/")
        if not bucket:
            raise GridError(f"store {uri}: expected s3://bucket or s3://bucket/prefix")
        self.bucket, self.prefix = bucket, prefix.strip("/")
        endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        # Path-style addressing: what MinIO, Ceph and other self-hosted endpoints expect.
        # Three tries unless the standard AWS_MAX_ATTEMPTS says otherwise.
        retries = (
            {"mode": "standard"}
            if os.environ.get("AWS_MAX_ATTEMPTS")
            else {"mode": "standard", "max_attempts": 3}
        )
        config = Config(
            connect_timeout=5,
            read_timeout=60,
            retries=retries,
            s3={"addressing_style": "path"} if endpoint else None,
            # a connection for each of the store's read threads (boto3 keeps 10): more
            # threads than connections wait for one, and drop the extras after each use
            max_pool_connections=self.read_threads,
        )
        self.client = boto3.client("s3", endpoint_url=endpoint or None, config=config)

    def _key(self, name: str) -> str:
        return f"{self.prefix}/{name}" if self.prefix else name

    def _call(self, what: str, fn, **kw):
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return fn(Bucket=self.bucket, **kw)
        except (BotoCoreError, ClientError) as e:
            raise self._error(f"cannot {what}", e) from None

    def put_object(self, name: str, data: bytes) -> None:
        self._call(f"write {name}", self.client.put_object, Key=self._key(name), Body=data)

    def get_object(self, name: str) -> bytes:
        found = self.read_tagged(name)
        if found is None:
            raise NotFound(self.uri, f"cannot read {name}", "no such object")
        return found[0]

    def copy_object(self, source: str, name: str) -> None:
        from botocore.exceptions import ClientError

        copied = {"Bucket": self.bucket, "Key": self._key(source)}  # no upload: one request
        try:
            self.client.copy_object(Bucket=self.bucket, Key=self._key(name), CopySource=copied)
        except ClientError as e:
            if _missing(e):
                raise NotFound(self.uri, f"cannot copy {source}", "no such object") from None
            raise self._error(f"cannot copy to {name}", e) from None
        except Exception as e:  # BotoCoreError: the endpoint unreachable
            raise self._error(f"cannot copy to {name}", e) from None

    def create(self, name: str, data: bytes) -> bool:
        # If-None-Match: * makes S3 (since 2024), MinIO and moto refuse to overwrite
        return self._precondition(
            f"create {name}",
            self.client.put_object,
            Key=self._key(name),
            Body=data,
            IfNoneMatch="*",
        )

    def read_tagged(self, name: str) -> tuple[bytes, str] | None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            resp = self.client.get_object(Bucket=self.bucket, Key=self._key(name))
            return resp["Body"].read(), resp["ETag"]
        except ClientError as e:
            if _missing(e):
                return None
            raise self._error(f"cannot read {name}", e) from None
        except BotoCoreError as e:  # the endpoint unreachable (found by the fault campaign)
            raise self._error(f"cannot read {name}", e) from None

    def replace_if(self, name: str, data: bytes, tag: str) -> bool:
        return self._precondition(
            f"replace {name}", self.client.put_object, Key=self._key(name), Body=data, IfMatch=tag
        )

    def delete_if(self, name: str, tag: str) -> bool:
        return self._precondition(
            f"delete {name}", self.client.delete_object, Key=self._key(name), IfMatch=tag
        )

    def _precondition(self, what: str, fn, **kw) -> bool:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            fn(Bucket=self.bucket, **kw)
            return True
        except ClientError as e:
            err = e.response.get("Error", {})
            if err.get("Code") in (
                "PreconditionFailed",
                "ConditionalRequestConflict",
            ) or e.response.get("ResponseMetadata", {}).get("HTTPStatusCode") in (409, 412):
                return False
            raise self._error(f"cannot {what}", e) from None
        except BotoCoreError as e:
            raise self._error(f"cannot {what}", e) from None

    def _error(self, action: str, e: Exception) -> StoreError:
        """botocore's error as ours: `StoreUnreachable` where no answer came (a connection or
        timeout error) or the service failed (5xx), which passes; else `StoreError`."""
        from botocore.exceptions import ClientError

        status = 0
        if isinstance(e, ClientError):
            status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
        cls = StoreUnreachable if not isinstance(e, ClientError) or status >= 500 else StoreError
        return cls(self.uri, action, _one_line(e))

    def delete_object(self, name: str) -> None:
        self._call(f"delete {name}", self.client.delete_object, Key=self._key(name))

    def _pages(self, prefix: str, **kw) -> Iterable[dict]:
        """The listing of `prefix`, a page of up to 1,000 keys per request (boto3's paginator)."""
        from botocore.exceptions import BotoCoreError, ClientError

        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=prefix, **kw
        )
        try:
            yield from pages
        except (BotoCoreError, ClientError) as e:
            raise self._error("cannot list", e) from None

    def list_objects(self, folder: str) -> list[str]:
        prefix = self._key(folder) + "/"
        cut = len(self._key(""))
        return sorted(
            obj["Key"][cut:] for page in self._pages(prefix) for obj in page.get("Contents", [])
        )

    def scan_objects(self, folder: str) -> dict[str, tuple[str, int]]:
        prefix = self._key(folder) + "/"
        cut = len(self._key(""))
        return {
            obj["Key"][cut:]: (obj.get("ETag", ""), int(obj.get("Size", 0)))
            for page in self._pages(prefix)
            for obj in page.get("Contents", [])
        }

    def list_grids(self) -> list[str]:
        prefix = self._key("")
        grids = [
            p["Prefix"][len(prefix) :].rstrip("/")
            for page in self._pages(prefix, Delimiter="/")
            for p in page.get("CommonPrefixes", [])
        ]
        return sorted(
            g
            for g in grids
            if self._call(
                "list", self.client.list_objects_v2, Prefix=self._key(f"{g}/trials/"), MaxKeys=1
            ).get("KeyCount", 0)
        )


def _missing(e) -> bool:
    """Whether botocore's ClientError says the object does not exist (by code, not text)."""
    status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return e.response.get("Error", {}).get("Code") in ("NoSuchKey", "404") or status == 404
