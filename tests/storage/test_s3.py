"""The S3 driver against a real S3-protocol server (moto) on 127.0.0.1.

Failures mid-upload are injected with botocore's public event hooks on the driver's client
(``before-send``), which run just before a request leaves; every hook is removed afterwards
because the client is shared by the process.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

import modelbook
from modelbook import Model, OutputModel, Task
from modelbook.errors import StorageError, UploadError
from modelbook.storage import driver_for
from modelbook.storage.s3 import S3Driver, S3Location, endpoint_url, parse_s3_uri

MIB = 1024 * 1024


def write_random(path: Path, size: int) -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = os.urandom(size)
    path.write_bytes(data)
    return data


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@contextmanager
def before_send(driver: S3Driver, operation: str, handler: Callable[..., Any]) -> Iterator[None]:
    """Run ``handler(request=...)`` before each ``operation`` request the driver sends."""
    event = f"before-send.s3.{operation}"
    driver.client.meta.events.register(event, handler)
    try:
        yield
    finally:
        driver.client.meta.events.unregister(event, handler)


def part_number(request: Any) -> int:
    return int(parse_qs(urlsplit(request.url).query)["partNumber"][0])


def pending_uploads(driver: S3Driver, bucket: str) -> list[dict[str, Any]]:
    return driver.client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# -- URIs and endpoints ---------------------------------------------------------------------


def test_parses_plain_and_endpoint_uris() -> None:
    assert parse_s3_uri("s3://bkt/a/b c.pt") == S3Location("bkt", "a/b c.pt", None)
    assert parse_s3_uri("s3://minio:9000/bkt/a.pt") == S3Location("bkt", "a.pt", "minio:9000")
    assert parse_s3_uri("s3://bkt") == S3Location("bkt", "", None)
    for bad in ("s3://", "s3:///key", "s3://minio:9000", "file:///tmp/x"):
        with pytest.raises(StorageError):
            parse_s3_uri(bad)


def test_endpoint_resolution(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("MODELBOOK_S3_ENDPOINT_URL", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(var, raising=False)
    assert endpoint_url(None) is None  # boto3's own chain decides
    assert endpoint_url("minio:9000") == "https://minio:9000"
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://minio:9000/")
    assert endpoint_url("minio:9000") == "http://minio:9000"  # same host: its scheme
    monkeypatch.setenv("MODELBOOK_S3_ENDPOINT_URL", "http://other:1234")
    assert endpoint_url(None) == "http://other:1234"
    assert endpoint_url("minio:9000") == "http://minio:9000"  # the URI's host wins


def test_object_verbs_need_a_key(driver: S3Driver, bucket: str, tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="names a bucket, not an object"):
        driver.put(tmp_path, f"s3://{bucket}")


# -- the verbs ------------------------------------------------------------------------------


def test_round_trip_single_and_multipart(driver: S3Driver, bucket: str, tmp_path: Path) -> None:
    for name, size in (("empty.bin", 0), ("small.pt", 1000), ("big.pt", 20 * MIB + 3)):
        data = write_random(tmp_path / name, size)
        uri = f"s3://{bucket}/runs/1/{name}"
        stored = driver.put(tmp_path / name, uri)
        assert (stored.uri, stored.sha256, stored.size) == (uri, sha256(data), size)
        head = driver.client.head_object(Bucket=bucket, Key=f"runs/1/{name}")
        assert head["Metadata"]["sha256"] == sha256(data)  # x-amz-meta-sha256
        dest = tmp_path / "out" / name
        driver.get(uri, dest)
        assert dest.read_bytes() == data
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "big.pt",
        "empty.bin",
        "small.pt",
    ]  # no temporary files left next to the destination


def test_overwrite_replaces_the_object(driver: S3Driver, bucket: str, tmp_path: Path) -> None:
    uri = f"s3://{bucket}/m.pt"
    write_random(tmp_path / "v1", 1000)
    driver.put(tmp_path / "v1", uri)
    v2 = write_random(tmp_path / "v2", 2000)
    assert driver.put(tmp_path / "v2", uri).sha256 == sha256(v2)
    driver.get(uri, tmp_path / "got")
    assert (tmp_path / "got").read_bytes() == v2


def test_exists_and_delete(driver: S3Driver, bucket: str, tmp_path: Path) -> None:
    uri = f"s3://{bucket}/a/m.pt"
    assert not driver.exists(uri)
    assert driver.delete(uri) is False
    write_random(tmp_path / "m.pt", 100)
    driver.put(tmp_path / "m.pt", uri)
    assert driver.exists(uri)
    assert not driver.exists(f"s3://{bucket}/a/m")  # keys are exact, not prefixes
    assert driver.delete(uri) is True
    assert not driver.exists(uri)
    assert driver.delete(uri) is False


def test_host_port_uris_go_to_that_endpoint(
    s3_server: str, bucket: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("MODELBOOK_S3_ENDPOINT_URL")
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server)  # gives the host:port its http scheme
    netloc = urlsplit(s3_server).netloc
    uri = f"s3://{netloc}/{bucket}/clearml/form.pt"
    data = write_random(tmp_path / "form.pt", 5000)
    driver = driver_for(uri)
    assert driver.put(tmp_path / "form.pt", uri).sha256 == sha256(data)
    driver.get(uri, tmp_path / "got")
    assert (tmp_path / "got").read_bytes() == data
    with pytest.raises(StorageError, match="not on this driver's endpoint"):
        driver.exists(f"s3://{bucket}/clearml/form.pt")


# -- atomicity ------------------------------------------------------------------------------


def test_upload_failing_mid_way_keeps_the_old_object(
    driver: S3Driver, bucket: str, tmp_path: Path
) -> None:
    from botocore.exceptions import ConnectionClosedError

    uri = f"s3://{bucket}/m.pt"
    old = write_random(tmp_path / "old.pt", 1000)
    driver.put(tmp_path / "old.pt", uri)
    write_random(tmp_path / "new.pt", 30 * MIB)

    def drop_part_2(request: Any, **_: Any) -> None:
        if part_number(request) == 2:
            raise ConnectionClosedError(endpoint_url=request.url)

    with before_send(driver, "UploadPart", drop_part_2), pytest.raises(UploadError) as caught:
        driver.put(tmp_path / "new.pt", uri)
    assert caught.value.transient is True
    assert "m.pt" in str(caught.value)
    driver.get(uri, tmp_path / "got")
    assert (tmp_path / "got").read_bytes() == old
    head = driver.client.head_object(Bucket=bucket, Key="m.pt")
    assert head["Metadata"]["sha256"] == sha256(old)
    assert pending_uploads(driver, bucket) == []  # the multipart upload was aborted


@pytest.mark.parametrize("change", ["truncated", "rewritten"])
def test_source_changing_mid_upload_stores_nothing(
    driver: S3Driver, bucket: str, tmp_path: Path, change: str
) -> None:
    """The sha256 recorded is always that of the bytes sent: a file that changes while it
    is read (shrinks, or keeps its size but not its content) is refused before completion."""
    uri = f"s3://{bucket}/m.pt"
    old = write_random(tmp_path / "old.pt", 1000)
    driver.put(tmp_path / "old.pt", uri)
    src = tmp_path / "new.pt"
    write_random(src, 80 * MIB)  # 10 parts; at most 4 are read ahead of the first send

    def change_source(request: Any, **_: Any) -> None:
        if part_number(request) != 1:
            return
        if change == "truncated":
            os.truncate(src, 0)
        else:
            with open(src, "r+b") as fh:
                fh.seek(-MIB, os.SEEK_END)
                fh.write(os.urandom(MIB))

    with before_send(driver, "UploadPart", change_source), pytest.raises(UploadError) as caught:
        driver.put(src, uri)
    assert caught.value.transient is True
    assert "changed while it was uploaded" in str(caught.value)
    driver.get(uri, tmp_path / "got")
    assert (tmp_path / "got").read_bytes() == old
    assert pending_uploads(driver, bucket) == []


# -- errors ---------------------------------------------------------------------------------


def test_missing_bucket_is_a_clear_permanent_error(s3_env: str, tmp_path: Path) -> None:
    write_random(tmp_path / "m.pt", 100)
    uri = "s3://no-such-bucket-here/models/m.pt"
    driver = driver_for(uri)
    with pytest.raises(UploadError) as caught:
        driver.put(tmp_path / "m.pt", uri)
    message = str(caught.value)
    assert caught.value.transient is False
    assert "'no-such-bucket-here' does not exist" in message and "create it" in message
    assert "models/m.pt" in message and s3_env in message
    with pytest.raises(StorageError, match="'no-such-bucket-here' does not exist") as caught:
        driver.get(uri, tmp_path / "got")
    assert caught.value.transient is False
    assert not driver.exists(uri)


def test_missing_key_is_a_permanent_error(driver: S3Driver, bucket: str, tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="no such object") as caught:
        driver.get(f"s3://{bucket}/nope.pt", tmp_path / "got")
    assert caught.value.transient is False
    assert f"s3://{bucket}/nope.pt" in str(caught.value)
    assert not (tmp_path / "got").exists()
    assert list(tmp_path.iterdir()) == []  # no temporary file left behind


def test_missing_credentials_say_how_to_set_them(
    s3_env: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    write_random(tmp_path / "m.pt", 100)
    with pytest.raises(UploadError, match="AWS_ACCESS_KEY_ID") as caught:
        driver_for("s3://bkt/m.pt").put(tmp_path / "m.pt", "s3://bkt/m.pt")
    assert caught.value.transient is False


def test_server_down_is_transient(
    aws_env: Callable[..., None], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    aws_env(AWS_MAX_ATTEMPTS="2")
    monkeypatch.setenv("MODELBOOK_S3_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    write_random(tmp_path / "m.pt", 100)
    driver = driver_for("s3://bkt/m.pt")
    calls: list[Callable[[], object]] = [
        lambda: driver.put(tmp_path / "m.pt", "s3://bkt/m.pt"),
        lambda: driver.get("s3://bkt/m.pt", tmp_path / "got"),
        lambda: driver.exists("s3://bkt/m.pt"),
        lambda: driver.delete("s3://bkt/m.pt"),
    ]
    for call in calls:
        with pytest.raises(StorageError, match="up and reachable") as caught:
            call()
        assert caught.value.transient is True


def test_server_stopping_mid_session_is_transient(
    own_s3_server: tuple[str, Callable[[], None]],
    aws_env: Callable[..., None],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    url, stop = own_s3_server
    aws_env(AWS_MAX_ATTEMPTS="2")
    monkeypatch.setenv("MODELBOOK_S3_ENDPOINT_URL", url)
    driver = driver_for("s3://stopping/m.pt")
    driver.client.create_bucket(Bucket="stopping")  # type: ignore[attr-defined]
    write_random(tmp_path / "m.pt", 100)
    driver.put(tmp_path / "m.pt", "s3://stopping/m.pt")
    stop()
    with pytest.raises(StorageError) as caught:
        driver.get("s3://stopping/m.pt", tmp_path / "got")
    assert caught.value.transient is True


def answer(status: int) -> Callable[..., Any]:
    """A ``before-send`` hook answering every request with ``status`` and no body."""
    from botocore.awsrequest import AWSResponse

    class Body:
        def stream(self) -> Iterator[bytes]:
            yield b""

    return lambda request, **_: AWSResponse(request.url, status, {}, Body())


@pytest.mark.parametrize(
    ("status", "transient", "says"),
    [(503, True, "503"), (429, True, "429"), (403, False, "access denied")],
)
def test_http_errors_are_classified(
    bucket: str, monkeypatch: pytest.MonkeyPatch, status: int, transient: bool, says: str
) -> None:
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")  # no retries with backoff: a client of its own
    driver = driver_for(f"s3://{bucket}")
    assert isinstance(driver, S3Driver)
    with before_send(driver, "HeadObject", answer(status)), pytest.raises(StorageError) as caught:
        driver.exists(f"s3://{bucket}/m.pt")
    assert caught.value.transient is transient
    assert says in str(caught.value) and bucket in str(caught.value)


def test_write_only_credentials_still_store(
    driver: S3Driver, bucket: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data = write_random(tmp_path / "m.pt", 1000)
    with before_send(driver, "HeadObject", answer(403)):
        stored = driver.put(tmp_path / "m.pt", f"s3://{bucket}/m.pt")
    assert stored.sha256 == sha256(data)
    assert "cannot check it" in caplog.text
    driver.get(f"s3://{bucket}/m.pt", tmp_path / "got")
    assert (tmp_path / "got").read_bytes() == data


def test_missing_boto3_names_the_install_command() -> None:
    code = textwrap.dedent(
        """
        import sys
        sys.modules["boto3"] = None
        import modelbook.storage.s3
        from modelbook.errors import ConfigurationError
        from modelbook.storage import driver_for
        try:
            driver_for("s3://bkt/m.pt")
        except ConfigurationError as exc:
            print(exc)
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "pip install 'modelbook[s3]'" in done.stdout, done.stderr


def test_importing_the_driver_does_not_import_boto3() -> None:
    code = "import sys, modelbook.storage.s3; print('boto3' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


# -- through the public API -----------------------------------------------------------------


def test_output_model_to_s3_end_to_end(bucket: str, tmp_path: Path) -> None:
    modelbook.configure(home=tmp_path / "home")
    task = Task.init(project_name="vision", task_name="resnet run")
    src = tmp_path / "weights" / "model.pt"
    data = write_random(src, 9 * MIB)  # multipart

    model = OutputModel(task=task, name="resnet")
    uri = model.update_weights(weights_filename=str(src), upload_uri=f"s3://{bucket}/prefix")
    assert OutputModel.wait_for_uploads(timeout=60) == []

    prefix = f"s3://{bucket}/prefix/vision/resnet run.{task.id}/models/"
    assert uri.startswith(prefix) and uri.endswith("/model.pt")  # a folder per upload
    assert Model(model.id).url == uri
    key = uri[len(f"s3://{bucket}/") :]
    head = driver_for(uri).client.head_object(Bucket=bucket, Key=key)  # type: ignore[attr-defined]
    assert head["Metadata"]["sha256"] == sha256(data)
    local = Path(Model(model.id).get_local_copy(raise_on_error=True))  # type: ignore[arg-type]
    assert local.read_bytes() == data
    assert local.is_relative_to(tmp_path / "home" / "cache")


def test_task_output_uri_can_be_a_bare_bucket(bucket: str, tmp_path: Path) -> None:
    modelbook.configure(home=tmp_path / "home")
    task = Task.init(project_name="p", task_name="t", output_uri=f"s3://{bucket}")
    data = write_random(tmp_path / "w.pt", 1000)
    uri = OutputModel(task=task).update_weights(weights_filename=str(tmp_path / "w.pt"))
    assert OutputModel.wait_for_uploads(timeout=60) == []
    assert uri.startswith(f"s3://{bucket}/p/t.{task.id}/models/") and uri.endswith("/w.pt")
    driver_for(uri).get(uri, tmp_path / "got")
    assert (tmp_path / "got").read_bytes() == data


# -- memory ---------------------------------------------------------------------------------

MEASURE = textwrap.dedent(
    """
    import json, os, sys, time
    from pathlib import Path
    from modelbook.storage import driver_for

    def kib(field):
        for line in open("/proc/self/status"):
            if line.startswith(field + ":"):
                return int(line.split()[1])

    def measure(action):
        base = kib("VmRSS")
        with open("/proc/self/clear_refs", "w") as fh:  # reset VmHWM to the current RSS
            fh.write("5")
        start = time.perf_counter()
        action()
        return {"peak_mib": (kib("VmHWM") - base) / 1024, "seconds": time.perf_counter() - start}

    big, small, uri, dest = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], Path(sys.argv[4])
    driver = driver_for(uri)
    driver.put(small, uri + ".small")  # imports, thread pools and connections first
    driver.get(uri + ".small", dest)
    print(json.dumps({
        "put": measure(lambda: driver.put(big, uri)),
        "get": measure(lambda: driver.get(uri + ".small", dest)),
    }))
    """
)


def write_large(path: Path, size: int) -> str:
    digest = hashlib.sha256()
    with open(path, "wb") as fh:
        for _ in range(size // (16 * MIB)):
            block = os.urandom(16 * MIB)
            digest.update(block)
            fh.write(block)
    return digest.hexdigest()


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux /proc")
def test_memory_stays_flat_for_a_large_file(bucket: str, tmp_path: Path) -> None:
    """Peak RSS growth of a client process: put of 512 MiB, get of 64 MiB (moto re-reads the
    whole object for every ranged GET, so a larger download only makes the test slow)."""
    big, small, dest = tmp_path / "big.bin", tmp_path / "small.bin", tmp_path / "out.bin"
    big_sha = write_large(big, 512 * MIB)
    write_large(small, 64 * MIB)
    uri = f"s3://{bucket}/large.bin"
    done = subprocess.run(
        [sys.executable, "-c", MEASURE, str(big), str(small), uri, str(dest)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    for verb, size in (("put", 512), ("get", 64)):  # shown with pytest -s
        speed, peak = size / result[verb]["seconds"], result[verb]["peak_mib"]
        print(f"{verb} {size} MiB: {speed:.0f} MiB/s, peak RSS +{peak:.0f} MiB")
    assert result["put"]["peak_mib"] < 128
    assert result["get"]["peak_mib"] < 32  # the whole object would be 64
    assert dest.read_bytes() == small.read_bytes()
    head = driver_for(uri).client.head_object(Bucket=bucket, Key="large.bin")  # type: ignore[attr-defined]
    assert (head["ContentLength"], head["Metadata"]["sha256"]) == (512 * MIB, big_sha)
