"""Transfer: a 2 GiB file up to and down from the files server and an S3-protocol server.

Cases, each direction:

* ``requests`` streaming PUT / GET against a tiny streaming HTTP server on 127.0.0.1
  (``bench/_stream_server.py``; the baseline);
* modelbook's files-server driver against a ``modelbook server`` (``put`` is a raw ``PUT``
  that reads the file once, hashing it while sending, with the sha256 as a trailer the server
  checks before it keeps the file; ``get`` writes back to disk while receiving, fsyncs and
  renames); and, upload only, the same driver in the form it uses for a ClearML files server
  (hash the file, then a multipart ``POST`` with the sha256 header);
* ``requests`` plain PUT / GET against moto (server mode, 127.0.0.1): moto's own speed, and
  a download as 8 MiB ranged GETs one after another (the requests the S3 driver makes);
* modelbook's ``S3Driver`` against the same moto server (``put`` hashes the file, then
  uploads it in 8 MiB parts while hashing again what it sends; ``get`` fsyncs and renames).

The S3 cases download a 256 MiB object instead of 2 GiB: moto answers each ranged GET by
copying the whole object, which makes the driver's multi-part download quadratic on moto.

Every transfer runs in a fresh child process, so its peak RSS growth (sampled every 5 ms,
over the RSS just before the transfer starts) and its CPU time (``getrusage``: user + system,
all threads, the RSS sampler included in every case alike) are its own; imports, log-in and
connection set-up happen before the clock starts. Throughput is bytes / wall time, in MB/s
(10^6); CPU is seconds per GiB moved, the client's and (the streaming server and the
``modelbook server``, read from ``/proc`` around each transfer) the server's.

Usage: ``python bench/transfer.py [--quick] [--runs N]``
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from _common import (
    GIB,
    MIB,
    Goal,
    PeakRss,
    Table,
    cpu_seconds,
    free_port,
    header,
    http_ok,
    installed,
    missing,
    moto_server,
    options,
    python,
    report,
    serving,
)

CHILD_TIMEOUT = 600.0
#: Size of the object the S3 cases download (moto makes ranged GETs quadratic; see notes).
S3_DOWNLOAD = 256 * MIB
BUCKET = "bench"
BASELINE = "requests -> streaming HTTP server"
FILES = "modelbook -> files server"
FILES_MULTIPART = "modelbook -> files server, ClearML's multipart POST"
MOTO = "requests -> moto (plain S3 PUT/GET)"
MOTO_RANGED = "requests -> moto, 8 MiB ranged GETs in turn"
S3 = "modelbook S3Driver -> moto"
#: Issue 15: the files server at 0.9x a plain streaming PUT / GET of the same bytes.
FILES_GOAL = 0.9
AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "bench",
    "AWS_SECRET_ACCESS_KEY": "bench",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
}


# -- the child: one transfer, measured ------------------------------------------------------
def child(spec: dict[str, Any]) -> dict[str, float]:
    """Prepare one transfer, then time it and sample RSS; returns seconds, CPU seconds and
    RSS growth."""
    transfer = prepare(spec)
    with PeakRss() as peak:
        cpu = _cpu_seconds()
        start = time.perf_counter()
        transfer()
        elapsed = time.perf_counter() - start
        cpu = _cpu_seconds() - cpu
    moved = Path(spec["src"] if spec["direction"] == "up" else spec["dest"]).stat().st_size
    return {"seconds": elapsed, "cpu_seconds": cpu, "rss_growth": peak.growth, "bytes": moved}


def _cpu_seconds() -> float:
    """User + system CPU time of this process (all its threads) so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def ranged(url: str, dest: Path, size: int, ready: str) -> Callable[[], None]:
    """A download as ranged GETs of 8 MiB (the S3 driver's part size), one after another."""
    import requests

    session = requests.Session()
    session.get(ready, timeout=30).close()

    def download() -> None:
        with open(dest, "wb") as out:
            for first in range(0, size, 8 * MIB):
                last = min(size, first + 8 * MIB) - 1
                got = session.get(url, headers={"Range": f"bytes={first}-{last}"}, timeout=600)
                got.raise_for_status()
                out.write(got.content)

    return download


def prepare(spec: dict[str, Any]) -> Callable[[], None]:
    """Imports, log-in and a first request done; returns the transfer itself."""
    case, up = spec["case"], spec["direction"] == "up"
    src, dest = Path(spec["src"]), Path(spec["dest"])
    target = spec.get("target") or spec[f"target_{spec['direction']}"]
    if case == MOTO_RANGED:
        return ranged(target, dest, spec["size"], spec["ready"])
    if case in (BASELINE, MOTO):
        import requests

        session = requests.Session()
        session.get(spec["ready"], timeout=30).close()  # the connection is open

        def plain() -> None:
            if up:
                with open(src, "rb") as fh:
                    response = session.put(target, data=fh, timeout=(10, 600))
            else:
                with session.get(target, stream=True, timeout=(10, 600)) as response:
                    response.raise_for_status()
                    with open(dest, "wb") as out:
                        for chunk in response.iter_content(MIB):
                            out.write(chunk)
            response.raise_for_status()

        return plain
    import modelbook
    from modelbook import config
    from modelbook.storage import driver_for

    if case in (FILES, FILES_MULTIPART):
        server = spec["server"]
        modelbook.configure(
            home=spec["home"],
            api_host=server[0],
            files_host=server[1],
            access_key=server[2],
            secret_key=server[3],
        )
        config.get_backend().list_projects()  # logs in before the timing starts
    if case == FILES_MULTIPART:  # the form a ClearML files server takes (hash, then send)
        from modelbook.backends.http import HttpBackend
        from modelbook.storage.http import HttpFilesDriver

        backend = config.get_backend()
        assert isinstance(backend, HttpBackend)
        driver = HttpFilesDriver(backend.files_host, backend.client, raw_upload=False)
    elif case == FILES:
        driver = config.get_backend().driver_for(target)
    else:
        driver = driver_for(target)
    driver.exists(target)  # the connection is open
    return (lambda: driver.put(src, target)) if up else (lambda: driver.get(target, dest))


# -- the parent -----------------------------------------------------------------------------
def run_child(spec: dict[str, Any], env: dict[str, str]) -> dict[str, float]:
    done = subprocess.run(
        [python(), __file__, "--child", json.dumps(spec)],
        capture_output=True,
        text=True,
        timeout=CHILD_TIMEOUT,
        env=env,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{spec['case']} {spec['direction']} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def make_file(path: Path, size: int) -> None:
    """``size`` random bytes (incompressible), written in 64 MiB pieces."""
    with open(path, "wb") as fh:
        left = size
        while left > 0:
            piece = min(64 * MIB, left)
            fh.write(os.urandom(piece))
            left -= piece


def s3_setup(endpoint: str, down: Path) -> dict[str, dict[str, str]]:
    """Create the bucket and store ``down`` as the object both S3 cases download; what the
    two S3 cases need (plain requests get pre-signed URLs: no signing code of their own)."""
    import boto3

    client = boto3.session.Session().client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=AWS_ENV["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=AWS_ENV["AWS_SECRET_ACCESS_KEY"],
        region_name="us-east-1",
    )
    client.create_bucket(Bucket=BUCKET)
    client.upload_file(str(down), BUCKET, "down.bin")

    def url(method: str, key: str) -> str:
        where = {"Bucket": BUCKET, "Key": key}
        return client.generate_presigned_url(method, Params=where, ExpiresIn=86400)

    return {
        MOTO: {
            "target_up": url("put_object", "plain.bin"),
            "target_down": url("get_object", "down.bin"),
            "ready": f"{endpoint}/",
        },
        MOTO_RANGED: {
            "target_down": url("get_object", "down.bin"),
            "ready": f"{endpoint}/",
            "size": down.stat().st_size,
            "directions": ["down"],
        },
        S3: {"target_up": f"s3://{BUCKET}/driver.bin", "target_down": f"s3://{BUCKET}/down.bin"},
    }


@contextmanager
def destinations(
    root: Path, peers_env: dict[str, str], s3_down: Path
) -> Iterator[dict[str, dict[str, Any]]]:
    """Start the servers; yields, per case, what its child needs (or a reason it is skipped)."""
    with ExitStack() as stack:
        found: dict[str, dict[str, Any]] = {}
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        command = [
            python(),
            str(Path(__file__).with_name("_stream_server.py")),
            str(port),
            str(root / "stream-server"),
        ]
        stream = stack.enter_context(serving(command, http_ok(f"{url}/"), root / "stream.log", 30))
        found[BASELINE] = {
            "target": f"{url}/payload.bin",
            "ready": f"{url}/",
            "server_pid": stream.pid,
        }
        if installed("modelbook.server.testing") and not missing(["starlette", "uvicorn"]):
            from modelbook.server.testing import live_server

            server = stack.enter_context(live_server(root / "server"))
            found[FILES] = {
                "target": f"{server.files_host}/bench/payload.bin",
                "server": list(server[:4]),
                "home": str(root / "home"),
                "server_pid": server.pid,
            }
            found[FILES_MULTIPART] = {
                **found[FILES],
                "target": f"{server.files_host}/bench/multipart.bin",
                "directions": ["up"],
            }
        else:
            found[FILES] = {"skip": "not measured: pip install 'modelbook[server]'"}
            found[FILES_MULTIPART] = found[FILES]
        if missing(["boto3", "moto"]):
            skip = {"skip": "not measured: pip install 'modelbook[s3]' moto"}
            found[MOTO] = found[MOTO_RANGED] = found[S3] = skip
        else:
            endpoint = stack.enter_context(moto_server(root))
            peers_env["MODELBOOK_S3_ENDPOINT_URL"] = endpoint
            found.update(s3_setup(endpoint, s3_down))
        yield found


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["--child"]:
        print(json.dumps(child(json.loads(args[1]))))
        return 0
    opts = options(__doc__.splitlines()[0], args, runs=5, quick_runs=1)
    size = 16 * MIB if opts.quick else 2 * GIB
    head = header("4. Transfer", opts, ["requests", "boto3", "moto"])
    root = Path(tempfile.mkdtemp(prefix="modelbook-bench-transfer-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "CLEARML_"))}
    env.update(AWS_ENV)
    try:
        payload, small, s3_down = root / "payload.bin", root / "warmup.bin", root / "s3-down.bin"
        make_file(payload, size)
        make_file(small, min(size, 64 * MIB))
        make_file(s3_down, min(size, S3_DOWNLOAD))
        with destinations(root, env, s3_down) as found:
            tables = measure_all(found, payload, small, opts.runs, opts.warmup, root, env)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    shown = f"{size / GIB:g} GiB" if size >= GIB else f"{size // MIB} MiB"
    report(
        head,
        tables,
        [
            f"file: {shown} of random bytes; the warm-up moves a {min(size, 64 * MIB) // MIB} MiB "
            "file; the source is in the page cache",
            f"ratios to '{BASELINE}'; '{S3}' over '{MOTO}' isolates the driver from moto's speed",
            f"S3 downloads move a {min(size, S3_DOWNLOAD) // MIB} MiB object: moto answers each "
            "ranged GET by copying the whole object, so a multi-part download (the driver's 8 MiB "
            "ranges) costs size^2 / part size on moto; the 2 GiB one would take hours",
        ],
    )
    return 0


def measure_all(
    found: dict[str, dict[str, Any]],
    payload: Path,
    small: Path,
    runs: int,
    warmup: int,
    root: Path,
    env: dict[str, str],
) -> list[Table]:
    """Warm up each case and direction, then run them interleaved; six tables."""
    cases = [name for name, spec in found.items() if "skip" not in spec]
    speed: dict[str, dict[str, list[float]]] = {"up": {}, "down": {}}
    rss: dict[str, dict[str, list[float]]] = {"up": {}, "down": {}}
    cpu: dict[str, dict[str, list[float]]] = {"up": {}, "down": {}}
    server_cpu: dict[str, dict[str, list[float]]] = {"up": {}, "down": {}}
    for index in range(warmup + runs):
        src = small if index < warmup else payload
        for name in cases:
            for direction in found[name].get("directions", ("up", "down")):
                spec = {
                    **found[name],
                    "case": name,
                    "direction": direction,
                    "src": str(src),
                    "dest": str(root / f"download-{uuid.uuid4().hex}"),
                }
                pid = spec.get("server_pid")
                served = cpu_seconds(pid) if pid else 0.0
                result = run_child(spec, env)
                served = cpu_seconds(pid) - served if pid else 0.0
                Path(spec["dest"]).unlink(missing_ok=True)
                label = "warm-up" if index < warmup else f"run {index - warmup + 1}/{runs}"
                mb_s = result["bytes"] / result["seconds"] / 1e6
                grew = result["rss_growth"] / MIB
                per_gib = result["cpu_seconds"] / (result["bytes"] / GIB)
                print(
                    f"  .. {label} {name} {direction}: {mb_s:.0f} MB/s, RSS +{grew:.1f} MiB, "
                    f"CPU {per_gib:.2f} s/GiB",
                    file=sys.stderr,
                    flush=True,
                )
                if index >= warmup:
                    speed[direction].setdefault(name, []).append(mb_s)
                    rss[direction].setdefault(name, []).append(result["rss_growth"] / MIB)
                    cpu[direction].setdefault(name, []).append(per_gib)
                    if pid:
                        by_server = served / (result["bytes"] / GIB)
                        server_cpu[direction].setdefault(name, []).append(by_server)
    tables = []
    for direction, verb in (("up", "Upload"), ("down", "Download")):
        fast = Table(f"{verb} throughput", "MB/s", BASELINE, samples=speed[direction])
        memory = Table(
            f"{verb}: client peak RSS growth", "MiB", BASELINE, samples=rss[direction], ratios=False
        )
        work = Table(f"{verb}: client CPU per GiB", "s/GiB", BASELINE, samples=cpu[direction])
        work.columns["server CPU (s/GiB)"] = {
            name: f"{statistics.median(values):.2f}"
            for name, values in server_cpu[direction].items()
        }
        for name, spec in found.items():
            if "skip" in spec:
                fast.notes[name] = memory.notes[name] = work.notes[name] = spec["skip"]
        for row, goal in ((FILES, FILES_GOAL), (S3, 0.8)):
            fast.goals.append(Goal(f"{row} >= {goal}x {BASELINE}", row, goal, "ratio>="))
            memory.goals.append(Goal(f"{row}: RSS growth <= 64 MiB", row, 64, "value<="))
        fast.goals.append(Goal(f"{S3} >= 0.8x {MOTO} (same server)", S3, 0.8, "ratio>=", MOTO))
        if direction == "down":
            text = f"{S3} >= 0.8x {MOTO_RANGED} (same server, same requests)"
            fast.goals.append(Goal(text, S3, 0.8, "ratio>=", MOTO_RANGED))
        tables += [fast, memory, work]
    return tables


if __name__ == "__main__":
    sys.exit(main())
