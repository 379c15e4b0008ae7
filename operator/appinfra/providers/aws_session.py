"""AWS credentials and clients shared by the Secrets Manager and Parameter Store providers.

Credentials come from the default chain (IRSA, environment, instance profile)
or from static keys in a Secret, optionally exchanged for a role through STS.
Assumed-role credentials are replaced before they expire, and a client whose
credentials the service rejects is rebuilt once (keys rotated in the Secret, a
role's session revoked) before the refusal is reported.
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Generic, Protocol, TypeVar
from urllib.parse import urlsplit

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    CredentialRetrievalError,
    NoCredentialsError,
    ParamValidationError,
    PartialCredentialsError,
    ReadTimeoutError,
)

from appinfra.api.operatorconfig import AwsStore
from appinfra.providers.base import (
    BackendUnavailable,
    Forbidden,
    Kube,
    ProviderError,
    SecretNotFound,
    call_backend,
    credential,
)

TIMEOUT = 5
"""Seconds to connect and to wait for an answer: an outage must not hold a worker for long."""
BOTO_CONFIG = Config(
    connect_timeout=TIMEOUT,
    read_timeout=TIMEOUT,
    # botocore retries a throttled or failed call once; the binding's own capped,
    # jittered backoff handles longer trouble without holding a worker.
    # total_max_attempts counts the first try; botocore's max_attempts counts only retries.
    retries={"mode": "standard", "total_max_attempts": 2},
)
ROLE_MARGIN = 300.0
"""Assume the role again this long (at most half the session) before its credentials expire."""

_CATCH = (ClientError, BotoCoreError)
_NOT_FOUND = {"ResourceNotFoundException", "ParameterNotFound", "ParameterVersionNotFound"}
_FORBIDDEN = {
    "UnrecognizedClientException",
    "InvalidSignatureException",
    "InvalidClientTokenId",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "IncompleteSignature",
    "MissingAuthenticationToken",
    "ExpiredToken",
    "ExpiredTokenException",
}
_UNAVAILABLE = {
    "TooManyRequestsException",
    "RequestLimitExceeded",
    "InternalFailure",
    "InternalServiceError",
    "InternalServerError",
    "ServiceUnavailable",
    "ServiceUnavailableException",
    "RequestTimeout",
    "RequestTimeoutException",
}
_SAFE_CODE = re.compile(r"[A-Za-z0-9.]{1,64}")
_REGION = re.compile(r"[a-z]{2}(-[a-z]+)+-\d+")


class _Closable(Protocol):
    def close(self) -> None: ...


C = TypeVar("C", bound=_Closable)
T = TypeVar("T")


def aws_error(exc: Exception, store: str, action: str) -> ProviderError:
    """Our error for a failed request. Only the service's error code is kept (a fixed
    identifier); AWS's message text and botocore's (which can quote parameters) are dropped."""
    prefix = f"aws store {store!r}"
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
        shown = code if _SAFE_CODE.fullmatch(code) else f"HTTP {status}"
        if code in _NOT_FOUND:
            return SecretNotFound(f"{prefix}: nothing found {action} ({shown})")
        if code.startswith("AccessDenied") or code in _FORBIDDEN or status in (401, 403):
            return Forbidden(f"{prefix}: access denied {action} ({shown})")
        if code.startswith("Throttling") or code in _UNAVAILABLE or status >= 500:
            return BackendUnavailable(f"{prefix}: unavailable {action} ({shown})")
        return Forbidden(f"{prefix}: request refused {action} ({shown})")
    if isinstance(exc, NoCredentialsError | PartialCredentialsError | CredentialRetrievalError):
        return Forbidden(
            f"{prefix}: no usable AWS credentials {action}; set auth.secretRef or give the "
            "operator an identity (IRSA, environment, instance profile)"
        )
    if isinstance(exc, ParamValidationError):
        return Forbidden(f"{prefix}: invalid request {action}")
    if isinstance(exc, ConnectTimeoutError | ReadTimeoutError):
        return BackendUnavailable(f"{prefix}: no answer within {TIMEOUT}s {action}")
    return BackendUnavailable(f"{prefix}: cannot connect {action}")


def aws_problems(aws: AwsStore) -> list[str]:
    """Problems in the AWS part of a store's configuration."""
    problems = []
    if not _REGION.fullmatch(aws.region):
        problems.append(f"aws.region {aws.region!r} is not an AWS region name like eu-west-1")
    if aws.endpoint:
        url = urlsplit(aws.endpoint)
        if url.scheme not in ("http", "https") or not url.hostname:
            problems.append(f"aws.endpoint {aws.endpoint!r} is not an http(s) URL")
    return problems


def quiet_botocore() -> None:
    """botocore logs request parameters and response bodies (secret values, assumed-role
    keys) at DEBUG; keep its loggers at INFO or above whatever the operator's log level."""
    logger = logging.getLogger("botocore")
    logger.setLevel(max(logger.level, logging.INFO))


class AwsClient(Generic[C]):
    """One service client with valid credentials; thread-safe (boto3 clients are)."""

    def __init__(
        self,
        name: str,
        aws: AwsStore,
        kube: Kube,
        make: Callable[[boto3.session.Session, str | None, Config], C],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        quiet_botocore()
        self._name = name
        self._aws = aws
        self._kube = kube
        self._make = make
        self._clock = clock
        self._lock = threading.Lock()
        self._client: C | None = None
        self._refresh_at: float | None = None

    def request(self, operation: str, action: str, call: Callable[[C], T]) -> T:
        """`call` with a client, counted; rejected credentials are renewed and tried once more."""
        client, fresh = self._get()
        try:
            return self._call(operation, action, lambda: call(client))
        except Forbidden:
            if fresh:
                raise
        with self._lock:
            if self._client is client:
                self._client = None
        client, _ = self._get()
        return self._call(operation, action, lambda: call(client))

    def close(self) -> None:
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()

    def _get(self) -> tuple[C, bool]:
        """The client, and whether it was just built (with freshly obtained credentials)."""
        with self._lock:
            now = self._clock()
            if self._client is not None and (self._refresh_at is None or now < self._refresh_at):
                return self._client, False
            session, lifetime = self._session()
            self._client = self._make(session, self._aws.endpoint or None, BOTO_CONFIG)
            self._refresh_at = (
                None if lifetime is None else now + lifetime - min(ROLE_MARGIN, lifetime / 2)
            )
            return self._client, True

    def _session(self) -> tuple[boto3.session.Session, float | None]:
        """A session with our credentials and, for an assumed role, their lifetime."""
        region = self._aws.region
        ref = self._aws.auth.secret_ref
        if ref is None:
            base = boto3.session.Session(region_name=region)
        else:
            read = self._kube.read_secret_key
            base = boto3.session.Session(
                aws_access_key_id=credential(
                    lambda: read(ref.namespace, ref.name, ref.access_key_id_key)
                ),
                aws_secret_access_key=credential(
                    lambda: read(ref.namespace, ref.name, ref.secret_access_key_key)
                ),
                region_name=region,
            )
        role = self._aws.role_arn
        if role is None:
            return base, None
        session_name = f"appinfra-{self._name}"[:64]
        sts_client = base.client("sts", endpoint_url=self._aws.endpoint or None, config=BOTO_CONFIG)
        with contextlib.closing(sts_client) as sts:
            response = self._call(
                "assume_role",
                f"assuming role {role}",
                lambda: sts.assume_role(RoleArn=role, RoleSessionName=session_name),
            )
        credentials = response["Credentials"]
        lifetime = (credentials["Expiration"] - datetime.now(UTC)).total_seconds()
        session = boto3.session.Session(
            aws_access_key_id=credentials["AccessKeyId"],
            aws_secret_access_key=credentials["SecretAccessKey"],
            aws_session_token=credentials["SessionToken"],
            region_name=region,
        )
        return session, lifetime

    def _call(self, operation: str, action: str, request: Callable[[], T]) -> T:
        return call_backend(
            self._name, operation, request, _CATCH, lambda exc: aws_error(exc, self._name, action)
        )
