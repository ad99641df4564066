"""AWS clients: one botocore session per process, with a model loader made for cold starts.

Every Lambda function builds its DynamoDB client at init (and, with secrets configured, an SSM or
Secrets Manager one), so the cost of creating a client is paid on every cold start. Most of that
cost is botocore's data loader, not the client:
- it decodes the JSON model files (the service model, its endpoint rules, the partition tables) with
  the standard library into OrderedDicts, and
- before loading any service model it lists every service botocore ships (over 400 directories, a
  `listdir` and a `stat` each) only to check that the requested name is among them.
`Loader` below reads the same files with orjson into plain dicts (ordered too) and answers "is this
service known" by looking at that service's own directory; the full list is still built, exactly as
botocore builds it, when something iterates it (an unknown-service error message). In the Lambda
layer it also finds, ahead of botocore's own data, an endpoint table holding only `SERVICES`
(written at build time by layers/gateway/trim_endpoints.py from the layer's botocore; 1.2 MB less
JSON to parse per cold start). Client creation drops from about 55 ms to about 15 ms on the
development machine. The loaded models are equal to botocore's own (tests/test_awsclients.py).

Sessions are not safe to use from several threads at once, so clients are created under a lock;
clients themselves are thread-safe and are shared by the store's threads.
"""

from __future__ import annotations

import gzip
import os
import threading
from collections.abc import Sequence
from typing import Any

import botocore.loaders
import botocore.session
import orjson

__all__ = ["SERVICES", "client", "Loader"]

# every service the gateway creates a client for; the layer's trimmed endpoint table holds these
SERVICES = ("dynamodb", "ssm", "secretsmanager", "sqs", "s3")
# where the layer build puts that table (see layers/gateway/trim_endpoints.py)
LAYER_DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "awsdata")

_lock = threading.Lock()
_session: botocore.session.Session | None = None


def client(service_name: str, config: Any = None) -> Any:
    """A botocore client from the environment's own AWS settings (region, credentials, endpoints)."""
    global _session
    with _lock:
        if _session is None:
            session = botocore.session.Session()
            session.register_component("data_loader", _loader_for(session))
            _session = session
        return _session.create_client(service_name, config=config)


def _loader_for(session: botocore.session.Session) -> Loader:
    # the same search paths botocore's own create_loader() takes from AWS_DATA_PATH / data_path
    data_path = session.get_config_variable("data_path")
    extra = [os.path.expanduser(os.path.expandvars(p)) for p in data_path.split(os.pathsep)] if data_path else []
    if os.path.isdir(LAYER_DATA):
        extra.append(LAYER_DATA)
    return Loader(extra_search_paths=extra, file_loader=JSONFiles())


class JSONFiles:
    """botocore's file-loader interface (`exists`, `load_file`) over orjson."""

    _SUFFIXES = ((".json", open), (".json.gz", gzip.open))

    def exists(self, file_path: str) -> bool:
        return any(os.path.isfile(file_path + suffix) for suffix, _ in self._SUFFIXES)

    def load_file(self, file_path: str) -> Any:
        for suffix, opener in self._SUFFIXES:
            path = file_path + suffix
            if os.path.isfile(path):
                with opener(path, "rb") as fp:
                    return orjson.loads(fp.read())
        return None


class Loader(botocore.loaders.Loader):
    """botocore's loader, with a service-name check that does not scan every service."""

    def list_available_services(self, type_name: str) -> Sequence[str]:
        return _ServiceNames(self, type_name)

    def has_service(self, service_name: str, type_name: str) -> bool:
        """What botocore's scan decides for one name: some API version of it has `type_name`."""
        for root in self._potential_locations():
            directory = os.path.join(root, service_name)
            if not os.path.isdir(directory):
                continue
            for version in os.listdir(directory):
                if self.file_loader.exists(os.path.join(directory, version, type_name)):
                    return True
        return False

    def scan_services(self, type_name: str) -> list[str]:
        return botocore.loaders.Loader.list_available_services(self, type_name)


class _ServiceNames(Sequence):
    """The sorted service names of one type: membership checked per name, the full list on demand."""

    def __init__(self, loader: Loader, type_name: str) -> None:
        self._loader, self._type = loader, type_name
        self._known: dict[str, bool] = {}
        self._all: list[str] | None = None

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str) or not name or os.sep in name or name in (os.curdir, os.pardir):
            return False
        if name not in self._known:
            self._known[name] = self._loader.has_service(name, self._type)
        return self._known[name]

    def _names(self) -> list[str]:
        if self._all is None:
            self._all = self._loader.scan_services(self._type)
        return self._all

    def __getitem__(self, index):
        return self._names()[index]

    def __len__(self) -> int:
        return len(self._names())

    def __iter__(self):
        return iter(self._names())
