"""Fixtures for the storage tests: a real S3-protocol server (moto) on 127.0.0.1.

``s3_server`` starts moto's server on a free port once per session and always stops it
(``own_s3_server``: one for a single test, which may stop it early); ``s3_env`` points boto3
at it with dummy credentials and nothing from ``~/.aws``; ``bucket`` creates a fresh bucket
per test, so tests never see each other's objects.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("boto3", reason="the S3 driver needs: pip install 'modelbook[s3]'")
moto_server = pytest.importorskip("moto.server", reason="the S3 tests need moto[server]")

from modelbook.storage import driver_for  # noqa: E402
from modelbook.storage.s3 import S3Driver  # noqa: E402


def _start_moto() -> tuple[Any, str]:
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    return server, f"http://{host}:{port}"


@pytest.fixture(scope="session")
def s3_server() -> Iterator[str]:
    """The endpoint URL of a moto S3 server shared by the session."""
    server, url = _start_moto()
    try:
        yield url
    finally:
        server.stop()


@pytest.fixture
def own_s3_server() -> Iterator[tuple[str, Callable[[], None]]]:
    """A moto S3 server for one test: (endpoint URL, stop); stopped at the end if still up."""
    server, url = _start_moto()
    running = [True]

    def stop() -> None:
        if running.pop():
            server.stop()

    try:
        yield url, stop
    finally:
        if running:
            stop()


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Callable[..., None]:
    """Set dummy credentials, no ``~/.aws`` files, no instance metadata and no other AWS_*
    variables; keyword arguments set more variables."""

    def apply(**values: str) -> None:
        for var in [v for v in os.environ if v.startswith("AWS_")]:
            monkeypatch.delenv(var)
        settings = {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_CONFIG_FILE": str(tmp_path / "no-aws-config"),
            "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-aws-credentials"),
            "AWS_EC2_METADATA_DISABLED": "true",
            **values,
        }
        for var, value in settings.items():
            monkeypatch.setenv(var, value)

    return apply


@pytest.fixture
def s3_env(s3_server: str, aws_env: Callable[..., None], monkeypatch: pytest.MonkeyPatch) -> str:
    """Point modelbook's S3 driver at the shared moto server; returns its endpoint URL."""
    aws_env()
    monkeypatch.setenv("MODELBOOK_S3_ENDPOINT_URL", s3_server)
    return s3_server


@pytest.fixture
def bucket(s3_env: str) -> Iterator[str]:
    """A new, empty bucket on the moto server; emptied and removed after the test (moto
    keeps objects in the memory of this process)."""
    name = f"test-{uuid.uuid4().hex[:16]}"
    client = driver_for(f"s3://{name}").client  # type: ignore[attr-defined]
    client.create_bucket(Bucket=name)
    yield name
    for upload in client.list_multipart_uploads(Bucket=name).get("Uploads", []):
        client.abort_multipart_upload(Bucket=name, Key=upload["Key"], UploadId=upload["UploadId"])
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=name):
        for item in page.get("Contents", []):
            client.delete_object(Bucket=name, Key=item["Key"])
    client.delete_bucket(Bucket=name)


@pytest.fixture
def driver(bucket: str) -> S3Driver:
    """The driver for the test's bucket."""
    found = driver_for(f"s3://{bucket}")
    assert isinstance(found, S3Driver)
    return found
