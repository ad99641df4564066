"""DynamoDB for tests: a moto server on 127.0.0.1 that handles one request at a time.

moto's ThreadedMotoServer serves requests on several threads and does not serialise item updates
the way DynamoDB does, so exact-count concurrency tests on it prove nothing. Served by werkzeug with
`threaded=False`, every call (a conditional update, a whole transaction) runs alone and is atomic,
as on AWS. Fixtures here are imported by conftest.py:

- `moto_dynamodb`: the server's endpoint, with the AWS environment (fake credentials, region,
  `AWS_ENDPOINT_URL_DYNAMODB`) set for the session so boto3's own settings find it;
- `dynamo_store`: a fresh, initialised DynamoDBStore on a table prefix of its own;
- `dynamo_gateway`: a second gateway like `gateway`, but with GATEWAY_STORE_URL=dynamodb://….
"""

from __future__ import annotations

import os
import threading
import uuid

import pytest

AWS_TEST_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}


class MotoServer:
    """moto's DynamoDB (and every other mocked service) on 127.0.0.1, one request at a time."""

    def __init__(self) -> None:
        from moto.server import DomainDispatcherApplication, create_backend_app
        from werkzeug.serving import make_server

        app = DomainDispatcherApplication(create_backend_app)
        self._server = make_server("127.0.0.1", 0, app, threaded=False)
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> MotoServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._thread.join(timeout=10)

    def env(self) -> dict[str, str]:
        return {**AWS_TEST_ENV, "AWS_ENDPOINT_URL_DYNAMODB": self.url, "AWS_ENDPOINT_URL_SSM": self.url,
                "AWS_ENDPOINT_URL_SECRETS_MANAGER": self.url, "AWS_ENDPOINT_URL_SQS": self.url,
                "AWS_ENDPOINT_URL_S3": self.url}


@pytest.fixture(scope="session")
def moto_dynamodb():
    server = MotoServer().start()
    saved = {k: os.environ.get(k) for k in server.env()}
    os.environ.update(server.env())
    yield server
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    server.stop()


def table_prefix() -> str:
    return "t" + uuid.uuid4().hex[:10]


@pytest.fixture
def dynamo_store(moto_dynamodb):
    from llm_gateway.store.dynamodb import DynamoDBStore

    store = DynamoDBStore(table_prefix())
    store.init()
    return store


@pytest.fixture(scope="session")
def dynamo_gateway(moto_dynamodb, fake_openai):
    """The whole gateway served over a DynamoDB store (moto), for the end-to-end tests."""
    from llm_gateway.http.app import create_app
    from llm_gateway.runtime import Runtime
    from llm_gateway.store import open_store
    from tests.conftest import Gateway, gateway_server, gateway_settings

    settings = gateway_settings(f"dynamodb://{table_prefix()}", fake_openai.url, upstream_timeout=5.0)
    store = open_store(settings.store_url)
    store.init()
    runtime = Runtime.build(settings, store)
    server = gateway_server(create_app(runtime=runtime))
    yield Gateway(runtime, server.url, fake_openai)
    server.stop()
