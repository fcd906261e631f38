"""The HTTP backend against a live server: the Backend verbs, errors, auth renewal."""

from __future__ import annotations

from pathlib import Path

import pytest
from server_scenario import comparable, scenario

from modelbook.backends.http import HttpBackend
from modelbook.config import read_clearml_conf
from modelbook.errors import (
    ConfigurationError,
    InvalidArgumentError,
    ModelNotFoundError,
    RegistryError,
    TagFilterError,
    TaskNotFoundError,
)
from modelbook.records import ModelQuery
from modelbook.server.testing import free_port
from modelbook.store.sql import SqlStore


@pytest.fixture
def store(tmp_path: Path) -> SqlStore:
    store = SqlStore(f"sqlite:///{tmp_path / 'parity.db'}")
    yield store
    store.close()


def test_http_backend_gives_what_the_store_gives(backend, store) -> None:
    over_http = scenario(backend)
    embedded = scenario(store)
    for key in embedded:
        assert comparable(over_http[key]) == comparable(embedded[key]), key


def test_unknown_ids_raise_the_store_exceptions(backend, store) -> None:
    for b in (backend, store):
        with pytest.raises(ModelNotFoundError) as http_info:
            b.get_model("nope")
        assert http_info.value.model_id == "nope"
        with pytest.raises(TaskNotFoundError, match="no task with id 'nope'"):
            b.get_task("nope")
        with pytest.raises(ModelNotFoundError):
            b.update_model("nope", comment="x")
        with pytest.raises(ModelNotFoundError):
            b.list_model_versions("nope")
        with pytest.raises(InvalidArgumentError, match="no project with id"):
            b.get_project("nope")


def test_bad_arguments_raise_the_same_errors(backend, store) -> None:
    messages = []
    for b in (backend, store):
        with pytest.raises(TagFilterError) as tag_info:
            b.query_models(ModelQuery(tags=["__$bogus", "x"]))
        with pytest.raises(InvalidArgumentError) as order_info:
            b.query_models(ModelQuery(order_by=["-nonsense"]))
        with pytest.raises(InvalidArgumentError) as field_info:
            b.update_model("whatever", colour="red")
        with pytest.raises(InvalidArgumentError):
            b.get_or_create_project("")
        messages.append((str(tag_info.value), str(order_info.value), str(field_info.value)))
    assert messages[0] == messages[1]


def test_default_destination_is_the_files_host(backend, server) -> None:
    assert backend.default_destination() == server.files_host


def test_token_is_renewed_after_a_401(backend) -> None:
    backend.client.token()
    backend.client._token = "expired.or.forged"
    assert backend.list_projects() is not None
    assert backend.client._token != "expired.or.forged"


def test_token_is_renewed_before_it_expires(backend) -> None:
    first = backend.client.token()
    backend.client._expires = 0.0  # as if it expired long ago
    assert backend.client.token() != first


def test_wrong_credentials_give_a_registry_error(server) -> None:
    bad = HttpBackend(api_host=server.api_host, access_key="AAAAAAAAAAAAAAAAAAAA", secret_key="x")
    with pytest.raises(RegistryError, match=r"auth\.login failed .*HTTP 401.*invalid access key"):
        bad.list_projects()


@pytest.mark.slow
def test_unreachable_server_gives_a_registry_error_after_bounded_retries() -> None:
    dead = HttpBackend(api_host=f"http://127.0.0.1:{free_port()}", access_key="K", secret_key="S")
    with pytest.raises(RegistryError, match="cannot reach"):
        dead.list_projects()


def test_configuration_is_checked_eagerly() -> None:
    with pytest.raises(ConfigurationError, match="http:// or https://"):
        HttpBackend(api_host="127.0.0.1:8008", access_key="K", secret_key="S")
    with pytest.raises(ConfigurationError, match="credentials"):
        HttpBackend(api_host="http://127.0.0.1:8008")
    assert "S3CRET" not in repr(
        HttpBackend(api_host="http://h:1", access_key="K", secret_key="S3CRET").client
    )


def test_files_driver_roundtrip(backend, server, tmp_path) -> None:
    src = tmp_path / "w.bin"
    src.write_bytes(b"\x01\x02" * 5000)
    uri = f"{server.files_host}/proj/task name.1/models/w.bin"
    driver = backend.driver_for(uri)
    assert driver.client is backend.client
    stored = driver.put(src, uri)
    assert stored.size == 10000 and stored.uri == uri
    assert (server.files_root / "proj/task name.1/models/w.bin").read_bytes() == src.read_bytes()
    assert driver.exists(uri)
    dest = tmp_path / "out" / "w.bin"
    driver.get(uri.replace(" ", "%20"), dest)
    assert dest.read_bytes() == src.read_bytes()
    assert driver.delete(uri) and not driver.delete(uri)
    assert not driver.exists(uri)


def test_files_driver_reads_other_hosts_without_a_token(backend, server) -> None:
    driver = backend.driver_for("http://127.0.0.1:1/elsewhere/w.bin")
    assert driver.client is None
    assert driver._headers("http://127.0.0.1:1/elsewhere/w.bin") == {}


def test_read_clearml_conf_as_clearml_init_writes_it(tmp_path) -> None:
    conf = tmp_path / "clearml.conf"
    conf.write_text(
        """
# ClearML SDK configuration file
api {
    # Notice: 'host' is the api server (default port 8008), not the web server.
    api_server: http://10.0.0.5:8008
    web_server: http://10.0.0.5:8080
    files_server: "http://10.0.0.5:8081"
    # Credentials are generated using the webapp, http://localhost:8080//settings
    credentials {"access_key": "AK123", "secret_key": "SK/with+chars=="}
}
sdk {
    storage { cache { default_base_dir: "~/.clearml/cache" } }
    aws { s3 { credentials: [ { bucket: "b", key: "k" } ] } }
}
"""
    )
    assert read_clearml_conf(conf) == {
        "api_host": "http://10.0.0.5:8008",
        "files_host": "http://10.0.0.5:8081",
        "access_key": "AK123",
        "secret_key": "SK/with+chars==",
    }
    dotted = tmp_path / "dotted.conf"
    dotted.write_text('api.api_server = "https://api.example.com"\napi.credentials.access_key: K\n')
    assert read_clearml_conf(dotted) == {"api_host": "https://api.example.com", "access_key": "K"}


def test_weights_uploaded_to_a_modelbook_server_are_read_once(
    server, tmp_path, monkeypatch
) -> None:
    """The upload worker sends the spooled file with the sha256 as a trailer, hashed while
    it is sent: no hashing pass over the file before it (the ClearML layout does not need
    the digest in the object's name), and the registry still gets the digest."""
    import hashlib

    import modelbook
    from modelbook import OutputModel, Task, uploads

    modelbook.configure(home=str(tmp_path / "home"), api_host=server.api_host,
                        files_host=server.files_host, access_key=server.access_key,
                        secret_key=server.secret_key)  # fmt: skip
    passes: list[Path] = []
    hash_pass = uploads.sha256_file

    def counted(path: Path) -> tuple[str, int]:
        passes.append(path)
        return hash_pass(path)

    monkeypatch.setattr(uploads, "sha256_file", counted)
    weights = tmp_path / "w.bin"
    weights.write_bytes(b"weights " * 100_000)
    task = Task.init(project_name="read once", task_name="upload")
    model = OutputModel(task=task)
    model.update_weights(str(weights), iteration=1)
    assert OutputModel.wait_for_uploads(timeout=30) == []
    version = modelbook.Model(model.id).versions[-1]
    task.close()
    assert passes == []
    assert version.sha256 == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert version.size == weights.stat().st_size
