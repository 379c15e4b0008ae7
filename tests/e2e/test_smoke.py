"""The test servers are real: each check here fails against a fake or a stub."""

from __future__ import annotations

import json

import boto3
import hvac
import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from tests.e2e.conftest import Moto, OpenBao
from tests.support.kube import Cluster
from tests.support.openbao import enable_kubernetes_auth
from tests.support.servers import wait_until


def test_readyz(cluster: Cluster) -> None:
    assert cluster.kubectl("get", "--raw", "/readyz").stdout.strip() == "ok"


def test_deployment_gets_replicaset_from_controller_manager(
    cluster: Cluster, namespace: str
) -> None:
    cluster.kubectl(
        "-n", namespace, "create", "deployment", "web", "--image=registry.k8s.io/pause:3.10"
    )

    def replicaset_owned_by_web() -> bool:
        rs = cluster.kubectl_json("-n", namespace, "get", "replicasets")["items"]
        return any(
            ref["kind"] == "Deployment" and ref["name"] == "web"
            for item in rs
            for ref in item["metadata"].get("ownerReferences", [])
        )

    wait_until(replicaset_owned_by_web, 60, "a ReplicaSet for Deployment web")


def test_garbage_collector_deletes_dependents(cluster: Cluster, namespace: str) -> None:
    with cluster.api() as api:
        core = client.CoreV1Api(api)
        owner = core.create_namespaced_config_map(
            namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="owner"))
        )
        ref = client.V1OwnerReference(
            api_version="v1", kind="ConfigMap", name="owner", uid=owner.metadata.uid
        )
        core.create_namespaced_config_map(
            namespace,
            client.V1ConfigMap(
                metadata=client.V1ObjectMeta(name="dependent", owner_references=[ref])
            ),
        )
        core.delete_namespaced_config_map("owner", namespace)

        def dependent_gone() -> bool:
            try:
                core.read_namespaced_config_map("dependent", namespace)
            except ApiException as exc:
                return exc.status == 404
            return False

        wait_until(dependent_gone, 60, "the garbage collector to delete the dependent")


def test_rbac_denies_service_account_without_binding(cluster: Cluster, namespace: str) -> None:
    with cluster.api() as api:
        client.CoreV1Api(api).create_namespaced_service_account(
            namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="lonely"))
        )
    token = cluster.token_for(namespace, "lonely")
    with cluster.api_with_token(token) as api, pytest.raises(ApiException) as denied:
        client.CoreV1Api(api).list_namespaced_secret(namespace)
    assert denied.value.status == 403
    assert f"system:serviceaccount:{namespace}:lonely" in str(denied.value.body)
    can_i = cluster.kubectl(
        "auth", "can-i", "list", "secrets", "-n", namespace,
        f"--as=system:serviceaccount:{namespace}:lonely", check=False,
    )  # fmt: skip
    assert can_i.stdout.strip() == "no"


def test_token_request_token_passes_token_review(cluster: Cluster, namespace: str) -> None:
    with cluster.api() as api:
        client.CoreV1Api(api).create_namespaced_service_account(
            namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="app"))
        )
        token = cluster.token_for(namespace, "app")
        review = client.AuthenticationV1Api(api).create_token_review(
            client.V1TokenReview(spec=client.V1TokenReviewSpec(token=token))
        )
        assert review.status.authenticated is True
        assert review.status.user.username == f"system:serviceaccount:{namespace}:app"
        forged = client.AuthenticationV1Api(api).create_token_review(
            client.V1TokenReview(spec=client.V1TokenReviewSpec(token=token[:-4] + "AAAA"))
        )
        assert not forged.status.authenticated


def test_openbao_kv2_roundtrip(openbao: OpenBao) -> None:
    bao = hvac.Client(url=openbao.address, token=openbao.root_token)
    assert bao.is_authenticated()
    bao.secrets.kv.v2.create_or_update_secret(
        path="smoke/db", secret={"password": "s3cret"}, mount_point="secret"
    )
    read = bao.secrets.kv.v2.read_secret_version(
        path="smoke/db", mount_point="secret", raise_on_deleted_version=True
    )
    assert read["data"]["data"] == {"password": "s3cret"}
    assert read["data"]["metadata"]["version"] >= 1


def test_openbao_kubernetes_login_through_token_review(
    cluster: Cluster, namespace: str, openbao: OpenBao
) -> None:
    """The real Vault-on-Kubernetes login: OpenBao asks our API server's TokenReview."""
    with cluster.api() as api:
        client.CoreV1Api(api).create_namespaced_service_account(
            namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="payments"))
        )
    bao = hvac.Client(url=openbao.address, token=openbao.root_token)
    mount = f"k8s-{namespace}"
    enable_kubernetes_auth(bao, cluster, namespace, mount)
    bao.sys.create_or_update_policy("payments-read", 'path "secret/*" { capabilities = ["read"] }')
    bao.auth.kubernetes.create_role(
        "payments",
        bound_service_account_names=["payments"],
        bound_service_account_namespaces=[namespace],
        policies=["payments-read"],
        audience="appinfra-test",
        mount_point=mount,
    )
    token = cluster.token_for(namespace, "payments", audiences=["appinfra-test"])
    login = hvac.Client(url=openbao.address).auth.kubernetes.login(
        "payments", token, mount_point=mount
    )
    assert login["auth"]["metadata"]["service_account_name"] == "payments"
    assert "payments-read" in login["auth"]["policies"]

    # A token the API server did not issue must be refused by the same path.
    with pytest.raises(hvac.exceptions.VaultError):
        hvac.Client(url=openbao.address).auth.kubernetes.login(
            "payments", token[:-4] + "AAAA", mount_point=mount
        )


def test_moto_secrets_manager_and_ssm_over_http(moto: Moto, aws_env: dict[str, str]) -> None:
    kwargs = {
        "endpoint_url": moto.endpoint,
        "region_name": aws_env["AWS_DEFAULT_REGION"],
        "aws_access_key_id": aws_env["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": aws_env["AWS_SECRET_ACCESS_KEY"],
    }
    sm = boto3.client("secretsmanager", **kwargs)
    sm.create_secret(Name="shop/payments/db", SecretString=json.dumps({"password": "pw"}))
    value = sm.get_secret_value(SecretId="shop/payments/db")
    assert json.loads(value["SecretString"]) == {"password": "pw"}

    ssm = boto3.client("ssm", **kwargs)
    ssm.put_parameter(Name="/shop/payments/token", Value="t0k", Type="SecureString")
    encrypted = ssm.get_parameter(Name="/shop/payments/token", WithDecryption=False)
    assert encrypted["Parameter"]["Type"] == "SecureString"
    assert encrypted["Parameter"]["Value"] != "t0k"
    decrypted = ssm.get_parameter(Name="/shop/payments/token", WithDecryption=True)
    assert decrypted["Parameter"]["Value"] == "t0k"
