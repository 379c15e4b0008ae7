"""AWS Secrets Manager and SSM Parameter Store.

Versions. Secrets Manager: a UUID-shaped version is a VersionId, anything else a
VersionStage (AWSCURRENT, AWSPREVIOUS or a custom label); unset reads AWSCURRENT.
Parameter Store: the version (a number or a label) is appended as `name:version`.

Path listing (Parameter Store only): every parameter under the path, recursively
and decrypted, keyed by its name relative to the path with each "/" replaced by
"_" (/shop/app/db/password under /shop/app -> db_password). Parameter names only
allow [a-zA-Z0-9_.-/], so every resulting key is a valid Secret key; two names
that map to the same key are refused rather than one silently winning. A listing
stops, refused, past MAX_PATH_KEYS parameters (a binding may not sync more keys)
or MAX_PATH_PAGES pages, so one path cannot make the operator read without end.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import boto3
from botocore.config import Config

from appinfra.api.operatorconfig import AwsStore
from appinfra.api.secretbinding import MAX_SYNCED_KEYS
from appinfra.providers.aws_session import AwsClient, aws_problems
from appinfra.providers.base import Forbidden, Kube, RemoteSecret, SecretNotFound

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager import SecretsManagerClient
    from mypy_boto3_ssm import SSMClient
    from mypy_boto3_ssm.type_defs import (
        GetParametersByPathRequestTypeDef,
        GetParametersByPathResultTypeDef,
    )

MAX_PATH_KEYS = MAX_SYNCED_KEYS
"""Parameters one path listing may return: the keys one SecretBinding may sync."""
PAGE_SIZE = 10  # GetParametersByPath's largest MaxResults
MAX_PATH_PAGES = 2 * MAX_PATH_KEYS // PAGE_SIZE
"""Pages one listing may take; twice what MAX_PATH_KEYS needs, as SSM may return short pages."""

_VERSION_ID = re.compile(r"[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")


def _secretsmanager(
    session: boto3.session.Session, endpoint: str | None, config: Config
) -> SecretsManagerClient:
    return session.client("secretsmanager", endpoint_url=endpoint, config=config)


def _ssm(session: boto3.session.Session, endpoint: str | None, config: Config) -> SSMClient:
    return session.client("ssm", endpoint_url=endpoint, config=config)


class SecretsManagerProvider:
    """A Secrets Manager store. Reads do not depend on the binding's namespace."""

    def __init__(
        self, name: str, aws: AwsStore, kube: Kube, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._name = name
        self._aws = aws
        self._client = AwsClient(name, aws, kube, _secretsmanager, clock)

    def identity(self, namespace: str) -> str:
        return ""

    def fetch(
        self, key: str, *, version: str | None, namespace: str, path_prefix: bool = False
    ) -> RemoteSecret:
        if path_prefix:
            raise Forbidden(
                f"aws store {self._name!r} (SecretsManager) cannot read a path prefix ({key!r}); "
                "name one secret, whose JSON properties become keys"
            )
        selector: dict[str, str] = {}
        if version is not None:
            selector["VersionId" if _VERSION_ID.fullmatch(version) else "VersionStage"] = version
        where = f"reading secret {key!r}" + (f" version {version!r}" if version else "")
        response = self._client.request(
            "get_secret", where, lambda sm: sm.get_secret_value(SecretId=key, **selector)
        )
        found = response.get("VersionId")
        if "SecretString" in response:
            text = response["SecretString"]
            return RemoteSecret(properties=_json_object(text), raw=text.encode(), version=found)
        return RemoteSecret(properties=None, raw=response.get("SecretBinary"), version=found)

    def validate(self) -> list[str]:
        return aws_problems(self._aws)

    def close(self) -> None:
        self._client.close()


class ParameterStoreProvider:
    """An SSM Parameter Store store. Reads do not depend on the binding's namespace."""

    def __init__(
        self,
        name: str,
        aws: AwsStore,
        kube: Kube,
        key_prefix: str,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._name = name
        self._aws = aws
        self._key_prefix = key_prefix
        self._client = AwsClient(name, aws, kube, _ssm, clock)

    def identity(self, namespace: str) -> str:
        return ""

    def fetch(
        self, key: str, *, version: str | None, namespace: str, path_prefix: bool = False
    ) -> RemoteSecret:
        if path_prefix:
            if version is not None:
                raise Forbidden(
                    f"aws store {self._name!r}: a path ({key!r}) has no versions; remove the "
                    "version"
                )
            return self._list(key)
        name = f"{key}:{version}" if version else key
        response = self._client.request(
            "get_secret",
            f"reading parameter {name!r}",
            lambda ssm: ssm.get_parameter(Name=name, WithDecryption=True),
        )
        parameter = response["Parameter"]
        found = parameter.get("Version")
        return RemoteSecret(
            properties=None,
            raw=parameter.get("Value", "").encode(),
            version=None if found is None else str(found),
        )

    def validate(self) -> list[str]:
        problems = aws_problems(self._aws)
        if "/" in self._key_prefix and not self._key_prefix.startswith("/"):
            problems.append(
                f"keyPrefix {self._key_prefix!r} must start with '/': Parameter Store names "
                "containing '/' are hierarchical and begin with '/' (e.g. '/{namespace}/')"
            )
        return problems

    def close(self) -> None:
        self._client.close()

    def _list(self, key: str) -> RemoteSecret:
        path = key.rstrip("/") or "/"
        values: dict[str, str] = {}
        names: dict[str, str] = {}
        token: str | None = None
        for _ in range(MAX_PATH_PAGES):
            page = self._page(path, token)
            for parameter in page.get("Parameters", []):
                name = parameter.get("Name", "")
                prop = property_name(path, name)
                if prop in names:
                    raise Forbidden(
                        f"aws store {self._name!r}: parameters {names[prop]!r} and {name!r} "
                        f"both map to key {prop!r}; rename one"
                    )
                if len(names) == MAX_PATH_KEYS:
                    raise Forbidden(
                        f"aws store {self._name!r}: more than {MAX_PATH_KEYS:,} parameters "
                        f"under path {path!r}, more than a binding may sync; bind a narrower path"
                    )
                names[prop] = name
                values[prop] = parameter.get("Value", "")
            token = page.get("NextToken")
            if not token:
                break
        else:
            raise Forbidden(
                f"aws store {self._name!r}: listing parameters under path {path!r} did not end "
                f"within {MAX_PATH_PAGES} pages; bind a narrower path"
            )
        if not values:
            raise SecretNotFound(f"aws store {self._name!r}: no parameters under path {path!r}")
        return RemoteSecret(properties=values, raw=None, version=None)

    def _page(self, path: str, token: str | None) -> GetParametersByPathResultTypeDef:
        request: GetParametersByPathRequestTypeDef = {
            "Path": path,
            "Recursive": True,
            "WithDecryption": True,
            "MaxResults": PAGE_SIZE,
        }
        if token:
            request["NextToken"] = token
        return self._client.request(
            "list_path",
            f"listing parameters under {path!r}",
            lambda ssm: ssm.get_parameters_by_path(**request),
        )


def property_name(path: str, name: str) -> str:
    """The key a parameter found under `path` gets: its relative name, "/" -> "_"."""
    relative = name.removeprefix(path.rstrip("/") + "/")
    return relative.strip("/").replace("/", "_")


def _json_object(text: str) -> dict[str, object] | None:
    """The secret's properties if it is a JSON object (the console's key/value form)."""
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None
