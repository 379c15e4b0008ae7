"""OpenBao's kubernetes auth method pointed at the test API server, as a cluster admin
would set it up for Vault: a reviewer ServiceAccount allowed to call TokenReview."""

from __future__ import annotations

import hvac
from kubernetes import client

from tests.support.kube import Cluster

REVIEWER = "vault-reviewer"


def enable_kubernetes_auth(
    bao: hvac.Client, cluster: Cluster, namespace: str, mount: str = "kubernetes"
) -> None:
    """Mount kubernetes auth at `mount`, reviewing logins with the token of a
    `vault-reviewer` ServiceAccount created in `namespace` (bound to
    system:auth-delegator). Roles are left to the caller."""
    with cluster.api() as api:
        client.CoreV1Api(api).create_namespaced_service_account(
            namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name=REVIEWER))
        )
        client.RbacAuthorizationV1Api(api).create_cluster_role_binding(
            client.V1ClusterRoleBinding(
                metadata=client.V1ObjectMeta(name=f"{namespace}-{REVIEWER}"),
                role_ref=client.V1RoleRef(api_group="rbac.authorization.k8s.io",
                                          kind="ClusterRole", name="system:auth-delegator"),
                subjects=[client.RbacV1Subject(kind="ServiceAccount", name=REVIEWER,
                                               namespace=namespace)],
            )
        )  # fmt: skip
    bao.sys.enable_auth_method("kubernetes", path=mount)
    bao.auth.kubernetes.configure(
        kubernetes_host=cluster.server,
        kubernetes_ca_cert=cluster.ca_pem.decode(),
        token_reviewer_jwt=cluster.token_for(namespace, REVIEWER),
        disable_local_ca_jwt=True,
        mount_point=mount,
    )
