"""Several gateway replicas as separate processes on one PostgreSQL and one S3-compatible store.

`start_moto` runs moto's S3 in server mode on loopback; `GatewayReplicas` starts N
`python -m itk_gateway.server` processes sharing DATABASE_URL and the bucket (BLOB_STORE=s3),
each with a data folder of its own, over backends given by the caller (in-process splitter,
stitcher and counting generators). Used by tests/replicas and the benchmarks.
"""

from __future__ import annotations

import logging
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from scripts.stack import HOST, ServiceProcess, free_port

BUCKET = "itk-replicas"
S3_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


def start_moto() -> tuple[Any, str]:
    """moto's S3 in server mode on a free loopback port, with the bucket made; (server, endpoint)."""
    import boto3
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request otherwise
    server = ThreadedMotoServer(ip_address=HOST, port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    client = boto3.client("s3", region_name="us-east-1", endpoint_url=endpoint,
                          aws_access_key_id="testing", aws_secret_access_key="testing")
    client.create_bucket(Bucket=BUCKET)
    return server, endpoint


def s3_keys(endpoint: str, prefix: str = "") -> list[str]:
    import boto3

    client = boto3.client("s3", region_name="us-east-1", endpoint_url=endpoint,
                          aws_access_key_id="testing", aws_secret_access_key="testing")
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
    return [item["Key"] for page in pages for item in page.get("Contents", [])]


class Backends(Protocol):
    """Where the replicas find splitter, stitcher and generators (BackendServices has these)."""

    @property
    def splitter_target(self) -> str: ...
    @property
    def stitcher_target(self) -> str: ...
    @property
    def generator_targets(self) -> list[str]: ...


@dataclass
class Replica:
    process: ServiceProcess
    rest_port: int

    @property
    def name(self) -> str:
        return self.process.name

    @property
    def rest_url(self) -> str:
        return f"http://{HOST}:{self.rest_port}"

    @property
    def grpc_target(self) -> str:
        return self.process.target

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.rest_url}/health", timeout=2) as reply:
                return reply.status == 200
        except OSError:
            return False

    def wait_serving(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while not self.healthy():
            if not self.process.alive():
                raise RuntimeError(f"{self.name} exited:\n{self.process.log_tail()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name} not serving after {timeout:.0f}s:\n{self.process.log_tail()}")
            time.sleep(0.1)

    def log(self) -> str:
        return self.process.log_path.read_text(errors="replace") if self.process.log_path.exists() else ""


@dataclass
class GatewayReplicas:
    workdir: Path
    database_url: str
    s3_endpoint: str
    backends: Backends
    count: int = 3
    env: dict[str, str] = field(default_factory=dict)
    replicas: list[Replica] = field(default_factory=list)

    def __post_init__(self) -> None:
        for index in range(self.count):
            name = f"gateway-{index}"
            env = {
                "DATABASE_URL": self.database_url, "BLOB_STORE": "s3", "S3_BUCKET": BUCKET,
                "S3_REGION": "us-east-1", "S3_ENDPOINT_URL": self.s3_endpoint, **S3_CREDENTIALS,
                "DATA_DIR": str(self.workdir / name), "SPLITTER_TARGET": self.backends.splitter_target,
                "STITCHER_TARGET": self.backends.stitcher_target,
                "GENERATOR_TARGETS": ",".join(self.backends.generator_targets),
                "GENERATOR_RESOLVE_INTERVAL_SEC": "0.5", "GENERATOR_RETRY_BACKOFF_SEC": "0.05",
                "CHUNK_TARGET_SEC": "3", "JOB_LEASE_SEC": "3", "JOB_POLL_SEC": "0.2", **self.env,
            }
            rest_port = free_port()
            env["PORT"] = str(rest_port)
            process = ServiceProcess(name, "itk_gateway.server", free_port(), env,
                                     self.workdir / "logs" / f"{name}.log")
            self.replicas.append(Replica(process, rest_port))

    def __getitem__(self, index: int) -> Replica:
        return self.replicas[index]

    def start(self, timeout: float = 90.0) -> None:
        for replica in self.replicas:
            replica.process.start()
        try:
            for replica in self.replicas:
                replica.wait_serving(timeout)
        except Exception:
            self.stop()
            raise

    def restart(self, index: int, wait: bool = True) -> Replica:
        """A fresh process in the place of replica `index` (killed first if it still runs)."""
        replica = self.replicas[index]
        replica.process.kill()
        replica.process.start()
        if wait:
            replica.wait_serving()
        return replica

    def stop(self) -> None:
        for replica in self.replicas:
            replica.process.stop(timeout=20.0)

    def __enter__(self) -> GatewayReplicas:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()
