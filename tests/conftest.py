"""Shared test settings and fixtures.

One torch thread per test process: the tests train tiny models, where a second thread buys
nothing and, on a busy 2-core machine (or beside Ray workers), makes each op wait for a core.

The S3 server is moto's standalone server on 127.0.0.1 (a free port), started once per
session; each test that uses it gets its own bucket and fake credentials.
"""

import uuid

import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _row_cache(monkeypatch, tmp_path_factory):
    """Each test's reads of the store cache rows in its own folder (results/store/reader.py), not
    in the user's ~/.cache."""
    monkeypatch.setenv("GRID_CACHE_DIR", str(tmp_path_factory.mktemp("grid-cache")))


@pytest.fixture(scope="session")
def moto_endpoint():
    """moto's S3 server on loopback, on a free port, for the whole session."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


def aws_env(monkeypatch, tmp_path, endpoint: str) -> None:
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing-secret")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


@pytest.fixture
def s3_uri(moto_endpoint, monkeypatch, tmp_path):
    """s3://<a fresh bucket>/results on the moto server, with fake credentials."""
    import boto3

    aws_env(monkeypatch, tmp_path, moto_endpoint)
    bucket = f"grid-test-{uuid.uuid4().hex[:10]}"
    boto3.client("s3", endpoint_url=moto_endpoint).create_bucket(Bucket=bucket)
    return f"s3://{bucket}/results"


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config):
    """Keep faulthandler on through the interpreter's tear-down (pytest turns its own off
    here): should Ray's, gRPC's or torch's native threads ever crash the exit, the log shows
    every thread's stack instead of a bare exit status 139."""
    import faulthandler
    import sys

    faulthandler.enable(file=sys.__stderr__, all_threads=True)
