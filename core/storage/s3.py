"""Amazon S3 and S3-compatible stores (MinIO, Ceph, moto): ``s3://bucket/key``.

URIs:

* ``s3://bucket/key/path``: the endpoint is ``MODELBOOK_S3_ENDPOINT_URL`` when set, else
  boto3's own chain (``AWS_ENDPOINT_URL_S3``, ``AWS_ENDPOINT_URL``, ``~/.aws/config``, AWS).
* ``s3://host:port/bucket/key/path`` (ClearML's form for MinIO and friends; a first component
  with a ``:`` is an endpoint, since bucket names never contain one): the object lives on
  ``host:port``, reached over https unless ``MODELBOOK_S3_ENDPOINT_URL``,
  ``AWS_ENDPOINT_URL_S3`` or ``AWS_ENDPOINT_URL`` names the same ``host:port`` with
  ``http://``.

The key is everything after the bucket, byte for byte (no percent-decoding).
Credentials and region come from boto3's chain (``AWS_ACCESS_KEY_ID`` /
``AWS_SECRET_ACCESS_KEY``, ``AWS_PROFILE``, ``~/.aws``, instance roles).

* ``put``: hashes the file (one sequential read), then uploads it with the sha256 in the
  ``x-amz-meta-sha256`` metadata, as one PutObject or a multipart upload. The upload reads the
  file again, sequentially, through a reader that hashes what it hands out and refuses to
  finish if those bytes differ from the first pass, so the recorded sha256 is always the one
  of the stored bytes. A failed multipart upload is aborted; S3 shows an object only on
  complete, so a failure leaves the previous object at the key untouched.
* ``get``: concurrent ranged GETs pinned to one ETag into a temporary file next to the
  destination, fsynced, size-checked, renamed.
* Errors are :class:`~modelbook.errors.StorageError` (``UploadError`` for ``put``) with a
  ``transient`` attribute: True for connection failures, timeouts, throttling and 5xx (retry
  later), False for what needs a fix (credentials, permissions, a missing bucket or key).
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, BinaryIO
from urllib.parse import urlsplit

from modelbook.errors import ConfigurationError, StorageError, UploadError
from modelbook.storage.base import StorageDriver, StoredObject, progress, sha256_file

if TYPE_CHECKING:
    from boto3.s3.transfer import TransferConfig

log = logging.getLogger("modelbook")

INSTALL_HINT = "pip install 'modelbook[s3]'"
ENDPOINT_ENV = "MODELBOOK_S3_ENDPOINT_URL"
SHA256_METADATA = "sha256"  # sent as the x-amz-meta-sha256 header
CONNECT_TIMEOUT = 10.0
#: Seconds to wait for each socket read (a response, or the next chunk of a body).
READ_TIMEOUT = 60.0
MIB = 1024 * 1024
PART_SIZE = 8 * MIB
MAX_PARTS = 10_000
#: Parts in flight at once; each buffered part costs ``part size`` of memory.
CONCURRENCY = 4

_TRANSIENT_CODES = frozenset(
    {
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "RequestTimeout",
        "InternalError",
        "ServiceUnavailable",
        "OperationAborted",
        "PreconditionFailed",
        "NoSuchUpload",
    }
)
_NOT_FOUND_CODES = frozenset({"404", "NotFound", "NoSuchKey"})
_CREDENTIAL_CODES = frozenset(
    {"InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "InvalidToken"}
)
_REGION_CODES = frozenset({"PermanentRedirect", "AuthorizationHeaderMalformed", "301"})
_CREDENTIALS_FIX = (
    "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE, or ~/.aws/credentials"
)

_clients: dict[tuple[str | None, tuple[tuple[str, str], ...]], Any] = {}
_clients_lock = threading.Lock()


@dataclass(frozen=True)
class S3Location:
    """Where an ``s3://`` URI points: a bucket, a key, and the ``host:port`` it names, if any."""

    bucket: str
    key: str
    endpoint: str | None = None


def parse_s3_uri(uri: str) -> S3Location:
    """Split ``s3://bucket/key`` or ``s3://host:port/bucket/key`` into its parts.

    The key may be empty (``s3://bucket`` is a destination root).

    Raises:
        StorageError: not an ``s3://`` URI, or no bucket in it.
    """
    if not uri.lower().startswith("s3://"):
        raise StorageError(f"{uri!r} is not an s3:// URI")
    first, _, rest = uri[len("s3://") :].partition("/")
    endpoint = None
    if ":" in first:
        endpoint, (first, _, rest) = first, rest.partition("/")
    if not first:
        raise StorageError(
            f"{uri!r} names no bucket; use s3://bucket/key or s3://host:port/bucket/key"
        )
    return S3Location(bucket=first, key=rest, endpoint=endpoint)


def endpoint_url(netloc: str | None) -> str | None:
    """The endpoint URL for a URI naming ``netloc`` (``host:port``) or none (None).

    None means "let boto3 decide" (``AWS_ENDPOINT_URL*``, ``~/.aws/config``, AWS).
    """
    override = os.environ.get(ENDPOINT_ENV) or None
    if netloc is None:
        return override.rstrip("/") if override else None
    for configured in (
        override,
        os.environ.get("AWS_ENDPOINT_URL_S3"),
        os.environ.get("AWS_ENDPOINT_URL"),
    ):
        if configured and urlsplit(configured).netloc == netloc:
            return configured.rstrip("/")
    return f"https://{netloc}"


def _import_boto3() -> tuple[Any, Any]:
    """``boto3`` and botocore's ``Config``, or a ConfigurationError saying how to install."""
    try:
        import boto3
        from botocore.config import Config
    except ImportError as exc:
        raise ConfigurationError(
            f"s3:// URIs need boto3, which is not installed; install it with: {INSTALL_HINT}"
        ) from exc
    return boto3, Config


def _shared_client(url: str | None) -> Any:
    """One boto3 client per endpoint and AWS environment in this process (clients are
    thread-safe; sessions are not, so each client gets its own session)."""
    boto3, Config = _import_boto3()
    key = (url, tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith("AWS_"))))
    with _clients_lock:
        client = _clients.get(key)
        if client is None:
            config = Config(
                connect_timeout=CONNECT_TIMEOUT,
                read_timeout=READ_TIMEOUT,
                max_pool_connections=2 * CONCURRENCY,
                s3={"addressing_style": "path"} if url else None,
            )
            client = boto3.session.Session().client("s3", endpoint_url=url, config=config)
            _clients[key] = client
    return client


def _transfer_config(size: int) -> TransferConfig:
    """Parts of 8 MiB, larger when needed to stay within S3's 10,000 parts."""
    from boto3.s3.transfer import TransferConfig

    part = max(PART_SIZE, -(-size // MAX_PARTS // MIB) * MIB)
    config = TransferConfig(
        multipart_threshold=part,
        multipart_chunksize=part,
        max_concurrency=CONCURRENCY,
        preferred_transfer_client="classic",
    )
    config.max_in_memory_upload_chunks = CONCURRENCY  # an s3transfer setting boto3 hides
    return config


class SourceChangedError(OSError):
    """The file being uploaded changed after it was hashed."""


class _VerifyingReader:
    """A non-seekable view of an open file that hashes what it hands out.

    Being non-seekable makes boto3 read it once, in order, buffering each part, so the hash
    is that of the bytes sent. Reaching the expected size with a different hash, or reading
    past it, raises :class:`SourceChangedError` before the upload is completed.
    """

    def __init__(self, fh: BinaryIO, sha256: str, size: int) -> None:
        self._fh, self._sha256, self._size = fh, sha256, size
        self._digest = hashlib.sha256()
        self._read = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def read(self, amount: int = -1) -> bytes:
        data = self._fh.read(amount)
        self._digest.update(data)
        self._read += len(data)
        short = amount is None or amount < 0 or len(data) < amount
        if self._read > self._size or (short and self._read < self._size):
            raise SourceChangedError(
                f"it was {self._size} bytes when hashed, then {self._read}+ bytes were read"
            )
        if self._read == self._size and self._digest.hexdigest() != self._sha256:
            raise SourceChangedError("its content changed while it was being uploaded")
        return data


class _Progress:
    """An s3transfer subscriber passing the bytes moved to a progress callback."""

    def __init__(self, step: Callable[[int], object]) -> None:
        self._step = step

    def on_queued(self, future: Any, **kwargs: Any) -> None:
        """Nothing to do when the transfer is queued."""

    def on_progress(self, future: Any, bytes_transferred: int, **kwargs: Any) -> None:
        self._step(bytes_transferred)

    def on_done(self, future: Any, **kwargs: Any) -> None:
        """Nothing to do when the transfer is done."""


class S3Driver(StorageDriver):
    """Moves files to and from S3 or an S3-compatible store, one endpoint per driver.

    Get one with :meth:`for_uri` (or :func:`modelbook.storage.driver_for`); the boto3 client
    is shared by every driver for the same endpoint and AWS environment.

    Args:
        client: a boto3 S3 client.
        endpoint: the ``host:port`` this driver serves for ``s3://host:port/...`` URIs.

    Example:
        >>> parse_s3_uri("s3://minio:9000/models/run-1/model.pt")
        S3Location(bucket='models', key='run-1/model.pt', endpoint='minio:9000')
        >>> driver = S3Driver.for_uri("s3://models/run-1/model.pt")  # doctest: +SKIP
        >>> driver.put(Path("model.pt"), "s3://models/run-1/model.pt")  # doctest: +SKIP
        StoredObject(uri='s3://models/run-1/model.pt', sha256='5c2f...', size=1048576)
    """

    schemes = ("s3",)

    def __init__(self, client: Any, endpoint: str | None = None) -> None:
        from botocore.exceptions import BotoCoreError, ClientError
        from s3transfer.exceptions import (
            RetriesExceededError,
            S3DownloadFailedError,
            S3ValidationError,
        )

        self.client = client
        self.endpoint = endpoint
        self._client_error = ClientError
        self._errors: tuple[type[Exception], ...] = (
            BotoCoreError,
            ClientError,
            RetriesExceededError,
            S3DownloadFailedError,
            S3ValidationError,
        )

    @classmethod
    def for_uri(cls, uri: str) -> S3Driver:
        """The driver for ``uri``'s endpoint.

        Raises:
            ConfigurationError: boto3 is not installed.
            StorageError: ``uri`` is not an ``s3://`` URI with a bucket.
        """
        location = parse_s3_uri(uri)
        return cls(_shared_client(endpoint_url(location.endpoint)), location.endpoint)

    @property
    def _where(self) -> str:
        return self.client.meta.endpoint_url

    def _locate(self, uri: str) -> S3Location:
        location = parse_s3_uri(uri)
        if not location.key:
            raise StorageError(f"{uri!r} names a bucket, not an object; add the key")
        if location.endpoint != self.endpoint:
            raise StorageError(
                f"{uri!r} is not on this driver's endpoint {self.endpoint or self._where!r}; "
                "use driver_for(uri)"
            )
        return location

    # -- the verbs --------------------------------------------------------------------------

    def put(
        self, src: Path, uri: str, sha256: str | None = None, move: bool = False
    ) -> StoredObject:
        location, src = self._locate(uri), Path(src)
        try:  # a known digest saves a pass: the reader below still checks every byte
            sha256, size = (sha256, src.stat().st_size) if sha256 else sha256_file(src)
        except OSError as exc:
            raise UploadError(f"cannot read {str(src)!r}: {exc}") from exc
        try:
            with open(src, "rb") as fh:
                self._upload(_VerifyingReader(fh, sha256, size), location, sha256, size)
        except SourceChangedError as exc:
            message = f"{str(src)!r} changed while it was uploaded to {uri!r} ({exc}); nothing "
            raise UploadError(message + "was stored, try again", transient=True) from exc
        except self._errors as exc:  # before OSError: some botocore errors are OSErrors
            raise self._translate(exc, "upload to", location, UploadError) from exc
        except OSError as exc:
            message = f"cannot read {str(src)!r} while uploading it to {uri!r}: {exc}"
            raise UploadError(message) from exc
        self._check_stored(location, uri, sha256, size)
        return StoredObject(uri=uri, sha256=sha256, size=size)

    def _upload(self, reader: _VerifyingReader, location: S3Location, sha: str, size: int) -> None:
        extra = {"Metadata": {SHA256_METADATA: sha}, "ContentType": "application/octet-stream"}
        with progress(size, PurePosixPath(location.key).name) as step:
            self.client.upload_fileobj(
                reader,
                location.bucket,
                location.key,
                ExtraArgs=extra,
                Callback=step,
                Config=_transfer_config(size),
            )

    def _check_stored(self, location: S3Location, uri: str, sha256: str, size: int) -> None:
        """HEAD the new object: its size and sha256 metadata must be the ones sent.

        Write-only credentials (no ``s3:GetObject``) get a 403: the upload's own answer is
        trusted then, with a warning.
        """
        try:
            head = self.client.head_object(Bucket=location.bucket, Key=location.key)
        except self._errors as exc:
            if _status(exc) == 403 or _code(exc) == "AccessDenied":
                log.warning("stored %s but cannot check it: HEAD is not allowed (403)", uri)
                return
            if _code(exc) not in _NOT_FOUND_CODES:
                raise self._translate(exc, "check", location, UploadError) from exc
            head = {}
        stored = (head.get("ContentLength"), head.get("Metadata", {}).get(SHA256_METADATA))
        if stored != (size, sha256):
            found = f"{stored[0]} bytes, sha256 {stored[1]}" if head else "nothing"
            raise UploadError(
                f"after uploading {size} bytes (sha256 {sha256}) to {uri!r} the store holds "
                f"{found}; another writer may have replaced it, upload again",
                transient=True,
            )

    def get(self, uri: str, dest: Path) -> None:
        location, dest = self._locate(uri), Path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.parent / f".{dest.name}.{uuid.uuid4().hex[:12]}.partial"
        try:
            with open(tmp, "wb") as fh:
                size = self._download(location, fh)
                fh.flush()
                os.fsync(fh.fileno())
                received = os.fstat(fh.fileno()).st_size
            if received != size:
                message = f"download of {uri!r} stopped at {received} of {size} bytes"
                raise StorageError(message, transient=True)
            os.replace(tmp, dest)
        except self._errors as exc:  # before OSError: some botocore errors are OSErrors
            raise self._translate(exc, "download", location, StorageError) from exc
        except OSError as exc:
            message = f"cannot save {uri!r} to {str(dest)!r}: {exc}"
            raise StorageError(message) from exc
        finally:
            tmp.unlink(missing_ok=True)

    def _download(self, location: S3Location, fh: BinaryIO) -> int:
        """Download into ``fh`` with concurrent ranged GETs pinned to the ETag of one HEAD;
        return the object's size."""
        from boto3.s3.transfer import create_transfer_manager

        name = PurePosixPath(location.key).name
        with (
            progress(None, name) as step,
            create_transfer_manager(self.client, _transfer_config(0)) as manager,
        ):
            future = manager.download(
                location.bucket, location.key, fh, subscribers=[_Progress(step)]
            )
            future.result()
            return future.meta.size

    def delete(self, uri: str) -> bool:
        location = self._locate(uri)
        if self._head(location, StorageError) is None:
            return False
        try:
            self.client.delete_object(Bucket=location.bucket, Key=location.key)
        except self._errors as exc:
            raise self._translate(exc, "delete", location, StorageError) from exc
        return True

    def exists(self, uri: str) -> bool:
        return self._head(self._locate(uri), StorageError) is not None

    def _head(self, location: S3Location, error: type[StorageError]) -> dict[str, Any] | None:
        """The object's HEAD response, or None when there is no such object (or bucket)."""
        try:
            return self.client.head_object(Bucket=location.bucket, Key=location.key)
        except self._client_error as exc:
            if _code(exc) in _NOT_FOUND_CODES:
                return None
            raise self._translate(exc, "check", location, error) from exc
        except self._errors as exc:
            raise self._translate(exc, "check", location, error) from exc

    # -- errors -----------------------------------------------------------------------------

    def _translate(
        self, exc: Exception, action: str, location: S3Location, error: type[StorageError]
    ) -> StorageError:
        """A modelbook error for a boto3/s3transfer exception, saying what to fix."""
        exc = getattr(exc, "last_exception", None) or exc  # s3transfer's RetriesExceededError
        what = f"s3://{location.bucket}/{location.key} at {self._where}"
        if _code(exc) in _NOT_FOUND_CODES:
            message, transient = self._not_found(location), False
        else:
            message, transient = _describe(exc, location.bucket, self._where)
        return error(f"cannot {action} {what}: {message}", transient=transient)

    def _not_found(self, location: S3Location) -> str:
        """Which of the key and the bucket is missing (a 404 to HEAD does not say)."""
        try:
            self.client.head_bucket(Bucket=location.bucket)
        except self._errors as exc:
            if _code(exc) in _NOT_FOUND_CODES | {"NoSuchBucket"}:
                return f"bucket {location.bucket!r} does not exist there; create it or fix the URI"
        return "there is no such object (deleted, or never uploaded); check the key"


def _code(exc: Exception) -> str:
    """The S3 error code of a ClientError (``"404"`` for a HEAD), else ``""``."""
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


def _status(exc: Exception) -> int:
    response = getattr(exc, "response", None) or {}
    return int(response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))


def _describe(exc: Exception, bucket: str, where: str) -> tuple[str, bool]:
    """(what went wrong and how to fix it, whether retrying later may succeed)."""
    from botocore import exceptions as bce
    from s3transfer.exceptions import S3DownloadFailedError

    name = type(exc).__name__
    if isinstance(exc, bce.NoCredentialsError | bce.PartialCredentialsError):
        return f"{exc}; {_CREDENTIALS_FIX}", False
    if isinstance(exc, bce.SSLError):
        return f"TLS failed ({exc}); check the endpoint URL and its certificate", False
    if isinstance(exc, bce.HTTPClientError | bce.ConnectionError | bce.IncompleteReadError):
        return f"{name}: {exc} (is the server at {where} up and reachable?)", True
    if isinstance(exc, bce.ChecksumError | S3DownloadFailedError):
        return f"{name}: {exc}", True
    code, status = _code(exc), _status(exc)
    if code == "NoSuchBucket":
        return f"bucket {bucket!r} does not exist there; create it or fix the URI", False
    if code in _CREDENTIAL_CODES:
        return f"{code}: the credentials are not valid there; {_CREDENTIALS_FIX}", False
    if code in ("AccessDenied", "AllAccessDisabled") or status == 403:
        return (
            f"{code or status}: access denied; give these credentials access to bucket "
            f"{bucket!r} (its policy or the user's IAM policy), or use other credentials",
            False,
        )
    if code in _REGION_CODES:
        return f"{code}: bucket {bucket!r} is in another region; set AWS_DEFAULT_REGION", False
    transient = code in _TRANSIENT_CODES or status >= 500 or status == 429
    return f"{name}: {exc}", transient


__all__ = ["S3Driver", "S3Location", "SourceChangedError", "endpoint_url", "parse_s3_uri"]
