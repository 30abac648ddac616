"""What file runs need from remote storage beyond fsspec's defaults: finite S3 timeouts, buckets
made only on request, read-only archives, and errors that name the endpoint.

fsspec's S3 filesystem retries a request that times out five times, and botocore retries each
of those attempts up to five times, so an endpoint that accepts connections but never answers
kept ``init_run`` waiting for minutes per request. ``S3_CONFIG`` bounds that; a user's own
``config_kwargs`` win key by key.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

import fsspec

from ..errors import BucketNotFoundError, StorageUnreachableError

if TYPE_CHECKING:
    from .location import Location

__all__ = [
    "S3_CONFIG",
    "check_bucket",
    "is_read_only",
    "reaching",
    "where",
    "with_storage_defaults",
]

S3_PROTOCOLS = ("s3", "s3a")

#: botocore ``Config`` defaults for S3 (``config_kwargs`` of s3fs). s3fs itself retries a timed
#: out request 5 times, so an endpoint that never answers fails after about
#: 5 x 2 x ``read_timeout`` seconds (106 s measured) instead of hanging.
S3_CONFIG: dict[str, Any] = {
    "connect_timeout": 5,
    "read_timeout": 10,
    "retries": {"total_max_attempts": 2, "mode": "standard"},
}

#: Filesystems that serve files but cannot store them (an archive opened for reading, a web
#: server): runs there open read-only.
READ_ONLY_PROTOCOLS = ("http", "https", "zip", "tar", "libarchive", "github", "git")


def with_storage_defaults(url: str, options: Mapping[str, Any] | None) -> dict[str, Any]:
    """``options`` for opening ``url``, with ``S3_CONFIG`` under the user's ``config_kwargs``
    when ``url`` is on S3 (for a chained URL such as ``zip://...::s3://...``, under ``s3``)."""
    options = dict(options or {})
    protocols = [fsspec.core.split_protocol(part)[0] for part in str(url).split("::")]
    if protocols[0] in S3_PROTOCOLS:
        return _with_s3_config(options)
    for protocol in protocols[1:]:
        if protocol in S3_PROTOCOLS:
            options[protocol] = _with_s3_config(options.get(protocol, {}))
    return options


def _with_s3_config(options: Mapping[str, Any]) -> dict[str, Any]:
    config = {**S3_CONFIG, **options.get("config_kwargs", {})}
    return {**options, "config_kwargs": config}


def is_read_only(location: Location) -> bool:
    """Whether ``location``'s filesystem can only be read (zip archives, web servers)."""
    protocols = _protocols(location.fs)
    if "zip" in protocols and getattr(location.fs, "mode", "r") != "r":
        return False  # a zip filesystem the caller opened for writing
    return any(p in READ_ONLY_PROTOCOLS for p in protocols)


def endpoint(location: Location) -> str:
    """Where ``location``'s requests go, for error messages."""
    protocols = _protocols(location.fs)
    if any(p in S3_PROTOCOLS for p in protocols):
        options = location.storage_options
        url = (
            options.get("endpoint_url")
            or options.get("client_kwargs", {}).get("endpoint_url")
            or os.environ.get("AWS_ENDPOINT_URL_S3")
            or os.environ.get("AWS_ENDPOINT_URL")
        )
        return f"the S3 endpoint {url}" if url else "AWS S3"
    return f"the {protocols[0]} server of {location}"


def where(location: Location) -> str:
    """``location``, and for S3 the endpoint its requests go to, for error messages."""
    if any(p in S3_PROTOCOLS for p in _protocols(location.fs)):
        return f"{location} ({endpoint(location)})"
    return str(location)


@contextlib.contextmanager
def reaching(location: Location) -> Iterator[None]:
    """Turn "no answer" from ``location``'s storage (timeouts, refused connections) into a
    ``StorageUnreachableError`` naming the endpoint."""
    try:
        yield
    except StorageUnreachableError:
        raise
    except Exception as ex:
        if not _is_unreachable(ex):
            raise
        raise StorageUnreachableError(
            f"Cannot reach {endpoint(location)} for {location}: {ex}"
        ) from ex


def _is_unreachable(ex: BaseException) -> bool:
    if isinstance(ex, TimeoutError | ConnectionError):
        return True
    try:
        from botocore.exceptions import ConnectionError as BotoConnectionError
        from botocore.exceptions import HTTPClientError
    except ImportError:  # pragma: no cover - S3 support not installed
        return False
    return isinstance(ex, HTTPClientError | BotoConnectionError)


def check_bucket(location: Location, *, create: bool) -> None:
    """Make sure the S3 bucket of ``location`` exists; create it only if ``create``.

    s3fs's ``makedirs`` creates a missing bucket, so a typo in a bucket name used to make a new
    bucket silently. Other filesystems have no buckets and pass.
    """
    if not any(p in S3_PROTOCOLS for p in _protocols(location.fs)):
        return
    bucket = location.path.strip("/").split("/", 1)[0]
    if _bucket_exists(location, bucket):
        return
    if not create:
        raise BucketNotFoundError(
            f"The S3 bucket '{bucket}' does not exist at {endpoint(location)}. mcbackend "
            "creates buckets only on request: pass create_bucket=True to the backend "
            "(or --create-bucket to `mcbackend copy`), or create it yourself."
        )
    location.fs.mkdir(bucket)


def _bucket_exists(location: Location, bucket: str) -> bool:
    """Ask S3 directly: s3fs's ``exists`` reports False for any error, a timeout included."""
    try:
        location.fs.call_s3("head_bucket", Bucket=bucket)
    except FileNotFoundError:
        return False
    except PermissionError:
        return True  # a bucket we may write to without being allowed to inspect it
    except OSError as ex:
        if "404" in str(ex) or "NoSuchBucket" in str(ex):
            return False
        raise
    return True


def _protocols(fs: fsspec.AbstractFileSystem) -> tuple[str, ...]:
    protocol = fs.protocol
    return (protocol,) if isinstance(protocol, str) else tuple(protocol)
