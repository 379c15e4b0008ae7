"""The operator configuration file: the example loads, mistakes are named by path."""

from __future__ import annotations

from pathlib import Path

import pytest

from appinfra.api.operatorconfig import ConfigError, OperatorConfig, load_config

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "operator-config" / "config.yaml"

VAULT = """
secretStores:
  v:
    vault:
      address: https://vault:8200
      auth: {token: {secretRef: {namespace: ops, name: vault-token, key: token}}}
    allowedNamespaces: ["shop", "team-*"]
"""


def _problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config(text)
    return [str(problem) for problem in caught.value.problems]


def test_example_loads() -> None:
    config = load_config(EXAMPLE.read_text())
    assert set(config.secret_stores) == {"vault-main", "aws-main"}
    vault = config.secret_stores["vault-main"].vault
    assert vault is not None and vault.kv.version == 2 and vault.auth.kubernetes is not None
    assert config.rate_limit.default_enforcement == "IngressNginx"


def test_empty_file_is_the_default_config() -> None:
    assert load_config("") == OperatorConfig()


def test_store_helpers() -> None:
    store = load_config(VAULT).secret_stores["v"]
    assert store.allows_namespace("shop") and store.allows_namespace("team-a")
    assert not store.allows_namespace("shopping")
    assert store.key_prefix_for("shop") == "shop/"


def test_aws_store_with_static_credentials() -> None:
    config = load_config(
        """
secretStores:
  a:
    aws:
      service: ParameterStore
      region: eu-west-1
      auth:
        secretRef: {namespace: ops, name: aws, accessKeyIDKey: id, secretAccessKeyKey: key}
      roleArn: arn:aws:iam::123:role/x
"""
    )
    aws = config.secret_stores["a"].aws
    assert aws is not None and aws.auth.secret_ref is not None
    assert aws.auth.secret_ref.access_key_id_key == "id"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "secretStores: {s: {allowedNamespaces: [a]}}",
            "secretStores.s: set exactly one of vault or aws",
        ),
        (
            "secretStores: {s: {vault: {address: https://v, auth: {}}}}",
            "secretStores.s.vault.auth: set exactly one of kubernetes, token or appRole",
        ),
        (
            "secretStores: {s: {aws: {service: S3, region: x}}}",
            "secretStores.s.aws.service: must be 'SecretsManager' or 'ParameterStore' (got 'S3')",
        ),
        (
            VAULT.replace("https://vault:8200", "https://vault:8200\n      kv: {version: 3}"),
            "secretStores.v.vault.kv.version: must be 1 or 2 (got 3)",
        ),
        (
            VAULT + '    keyPrefix: "{ns}/"\n',
            "secretStores.v.keyPrefix: unknown placeholder {ns}; only {namespace} is allowed",
        ),
        ("rateLimit: {default: ConfigMap}", "rateLimit.default: unknown field"),
        ("secretStores: {Bad_Name: {}}", "secretStores.Bad_Name: must be a DNS subdomain name"),
        ("- a list", "<file>: must be a mapping (secretStores:, rateLimit:)"),
        ("secretStores: [", "<file>: invalid YAML"),
    ],
)
def test_mistakes_are_named(text: str, expected: str) -> None:
    assert any(problem.startswith(expected) for problem in _problems(text))


def test_error_message_lists_every_problem() -> None:
    with pytest.raises(ConfigError, match=r"(?s)invalid operator configuration:.*vault or aws"):
        load_config("secretStores: {s: {}}")
