"""The operator configuration file: secret stores (owned by the cluster admin) and defaults.

Parsed with the same conventions as the CRDs (camelCase, closed objects) so a
typo in the Helm values is an error with a path, not a silently ignored key.
"""

from __future__ import annotations

import fnmatch
import re
from typing import Literal, Self

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from appinfra.api.base import ApiModel
from appinfra.api.formats import DNSSubdomain
from appinfra.api.problems import Problem, problems_from
from appinfra.api.ratelimitpolicy import Enforcement

NAMESPACE_PLACEHOLDER = "{namespace}"


def _require_exactly_one(model: ApiModel, *fields: str) -> None:
    """Raise unless exactly one of `fields` (Python names) is set; the message uses wire names."""
    if sum(getattr(model, name) is not None for name in fields) != 1:
        wire = [type(model).model_fields[name].alias or name for name in fields]
        raise ValueError(f"set exactly one of {', '.join(wire[:-1])} or {wire[-1]}")


class SecretKeyRef(ApiModel):
    """One key of a Kubernetes Secret holding a credential."""

    namespace: DNSSubdomain = Field(description="Namespace of the Secret.")
    name: DNSSubdomain = Field(description="Name of the Secret.")
    key: str = Field(min_length=1, description="Key in the Secret.")


class KubernetesAuth(ApiModel):
    """Vault's kubernetes auth method, logging in with a requested service account token."""

    role: str = Field(min_length=1, description="Vault role to log in as.")
    mount_path: str = Field(default="kubernetes", min_length=1, description="Auth mount path.")
    service_account: DNSSubdomain = Field(
        default="default",
        description="Service account, in the binding's namespace, whose token is requested.",
    )
    # A token without an audience is valid against the API server itself for its lifetime;
    # one for "vault" is only good for logging in to Vault.
    audience: str = Field(
        default="vault",
        min_length=1,
        description="Audience of the requested token; the Vault role must list it in its audience.",
    )


class TokenAuth(ApiModel):
    """A static Vault token read from a Secret."""

    secret_ref: SecretKeyRef = Field(description="The Secret key holding the token.")


class AppRoleAuth(ApiModel):
    """Vault's AppRole auth method."""

    role_id: str = Field(min_length=1, description="AppRole role ID.")
    secret_ref: SecretKeyRef = Field(description="The Secret key holding the secret ID.")
    mount_path: str = Field(default="approle", min_length=1, description="Auth mount path.")


class VaultAuth(ApiModel):
    """How the operator logs in to Vault; set exactly one method."""

    kubernetes: KubernetesAuth | None = Field(default=None, description="Kubernetes auth.")
    token: TokenAuth | None = Field(default=None, description="Token from a Secret.")
    app_role: AppRoleAuth | None = Field(default=None, description="AppRole auth.")

    @model_validator(mode="after")
    def _one_method(self) -> Self:
        _require_exactly_one(self, "kubernetes", "token", "app_role")
        return self


class VaultKV(ApiModel):
    """The KV secrets engine secrets are read from."""

    mount: str = Field(default="secret", min_length=1, description="Mount path of the engine.")
    version: Literal[1, 2] = Field(default=2, description="KV engine version: 1 or 2.")


class VaultStore(ApiModel):
    """A Vault or OpenBao server."""

    address: str = Field(
        pattern=r"^https?://", description="Server URL, e.g. https://vault.vault:8200."
    )
    ca_bundle: str = Field(default="", description="PEM CA bundle; empty means system roots.")
    kv: VaultKV = Field(default_factory=VaultKV, description="The KV engine.")
    auth: VaultAuth = Field(
        description="How to log in: set exactly one of kubernetes, token or appRole."
    )


class AwsCredentialsRef(ApiModel):
    """Static AWS credentials read from a Secret."""

    namespace: DNSSubdomain = Field(description="Namespace of the Secret.")
    name: DNSSubdomain = Field(description="Name of the Secret.")
    access_key_id_key: str = Field(
        alias="accessKeyIDKey", min_length=1, description="Key holding the access key ID."
    )
    secret_access_key_key: str = Field(
        min_length=1, description="Key holding the secret access key."
    )


class AwsAuth(ApiModel):
    """AWS credentials; empty means the default chain (IRSA/web identity, env, instance)."""

    secret_ref: AwsCredentialsRef | None = Field(
        default=None, description="Static credentials from a Secret."
    )


class AwsStore(ApiModel):
    """AWS Secrets Manager or SSM Parameter Store."""

    service: Literal["SecretsManager", "ParameterStore"] = Field(
        description="SecretsManager or ParameterStore."
    )
    region: str = Field(min_length=1, description="AWS region, e.g. eu-west-1.")
    endpoint: str = Field(default="", description="Endpoint override, e.g. a local emulator.")
    auth: AwsAuth = Field(default_factory=AwsAuth, description="Credentials.")
    role_arn: str | None = Field(
        default=None, pattern=r"^arn:", description="IAM role assumed after authenticating."
    )


class SecretStore(ApiModel):
    """One secret store bindings can name; set exactly one of vault or aws."""

    vault: VaultStore | None = Field(default=None, description="A Vault/OpenBao server.")
    aws: AwsStore | None = Field(default=None, description="An AWS secrets service.")
    allowed_namespaces: list[str] = Field(
        default_factory=list,
        description="Namespace globs (e.g. team-*) whose bindings may use the store; "
        "empty means none.",
    )
    key_prefix: str = Field(
        default=f"{NAMESPACE_PLACEHOLDER}/",
        description="Every remote key must start with this; {namespace} is replaced by the "
        "binding's namespace.",
    )

    @model_validator(mode="after")
    def _one_backend(self) -> Self:
        _require_exactly_one(self, "vault", "aws")
        return self

    @field_validator("key_prefix")
    @classmethod
    def _only_known_placeholders(cls, prefix: str) -> str:
        unknown = set(re.findall(r"\{[^}]*\}", prefix)) - {NAMESPACE_PLACEHOLDER}
        if unknown:
            raise ValueError(
                f"unknown placeholder {sorted(unknown)[0]}; only {NAMESPACE_PLACEHOLDER} is allowed"
            )
        return prefix

    def allows_namespace(self, namespace: str) -> bool:
        """Whether bindings in `namespace` may use this store."""
        return any(fnmatch.fnmatchcase(namespace, glob) for glob in self.allowed_namespaces)

    def key_prefix_for(self, namespace: str) -> str:
        """The prefix every remote key of a binding in `namespace` must start with."""
        return self.key_prefix.replace(NAMESPACE_PLACEHOLDER, namespace)


class RateLimitDefaults(ApiModel):
    """Defaults for RateLimitPolicies."""

    default_enforcement: Enforcement = Field(
        default="IngressNginx", description="Enforcement for policies that set none."
    )


class OperatorConfig(ApiModel):
    """The operator configuration file (--config)."""

    secret_stores: dict[DNSSubdomain, SecretStore] = Field(
        default_factory=dict, description="Secret stores by name."
    )
    rate_limit: RateLimitDefaults = Field(
        default_factory=RateLimitDefaults, description="RateLimitPolicy defaults."
    )


class ConfigError(ValueError):
    """The configuration file is invalid; `problems` says where and why."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__(
            "invalid operator configuration:\n" + "\n".join(f"  {p}" for p in problems)
        )


def load_config(text: str) -> OperatorConfig:
    """Parse the configuration file's text; raise ConfigError naming every problem."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ConfigError([Problem("<file>", f"invalid YAML: {error}")]) from None
    if data is None:
        return OperatorConfig()
    if not isinstance(data, dict):
        raise ConfigError([Problem("<file>", "must be a mapping (secretStores:, rateLimit:)")])
    try:
        return OperatorConfig.model_validate(data, strict=True, by_name=False)
    except ValidationError as error:
        raise ConfigError(problems_from(error)) from None
