import copy
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from appinfra.api.healthpolicy import HealthPolicySpec
from appinfra.render.common import Owner
from appinfra.render.healthpolicy import (
    LIVENESS,
    PRE_STOP,
    READINESS,
    hand_back_intent,
    health_verdict,
    owned_container_fields,
    render_healthpolicy,
    whole_probe,
)

OWNER = Owner("HealthPolicy", "payments", "shop", "uid-1")
LIVE_PROBE = {"httpGet": {"path": "/health/live", "port": "http"}, "periodSeconds": 10}
APP_OWN_READINESS = {"tcpSocket": {"port": 8080}}


def deployment(**pod: Any) -> dict[str, Any]:
    """`app` declares port `http` and has its own readiness probe; `sidecar` has nothing."""
    return {
        "metadata": {"name": "payments", "namespace": "shop"},
        "spec": {
            "replicas": 3,
            "template": {
                "spec": {
                    "containers": [
                        {
                            "name": "app",
                            "ports": [{"name": "http", "containerPort": 8080}],
                            "readinessProbe": APP_OWN_READINESS,
                        },
                        {"name": "sidecar", "ports": [{"name": "admin", "containerPort": 9000}]},
                    ],
                    "initContainers": [{"name": "migrate"}],
                    **pod,
                }
            },
        },
    }


def spec(**fields: Any) -> HealthPolicySpec:
    return HealthPolicySpec.model_validate({"targetRef": {"name": "payments"}, **fields})


def containers(intent: dict[str, Any]) -> dict[str, dict[str, Any]]:
    pod = intent.get("spec", {}).get("template", {}).get("spec", {})
    return {c["name"]: c for c in pod.get("containers", [])}


def managed(manager: str, container: str, *paths: str) -> dict[str, Any]:
    """A managedFields entry in FieldsV1 form, as the API server writes it."""
    fields: dict[str, Any] = {"f:name": {}}
    for path in paths:
        node = fields
        for part in path.split("."):
            node = node.setdefault(f"f:{part}", {".": {}})
    key = f'k:{{"name":"{container}"}}'
    return {
        "manager": manager,
        "operation": "Apply",
        "apiVersion": "apps/v1",
        "fieldsType": "FieldsV1",
        "fieldsV1": {
            "f:metadata": {"f:annotations": {"f:appinfra.dev/healthpolicy": {}}},
            "f:spec": {"f:template": {"f:spec": {"f:containers": {key: fields}}}},
        },
    }


def test_intent_is_annotated_and_carries_only_our_fields() -> None:
    out = render_healthpolicy(OWNER, spec(containers=["app"], liveness=LIVE_PROBE), deployment())
    assert out.problems == []
    intent = out.deployment
    assert intent["apiVersion"] == "apps/v1" and intent["kind"] == "Deployment"
    assert intent["metadata"] == {
        "name": "payments",
        "namespace": "shop",
        "annotations": {"appinfra.dev/healthpolicy": "payments"},
    }
    assert set(intent["spec"]) == {"template"}
    assert set(intent["spec"]["template"]["spec"]) == {"containers"}
    assert containers(intent)["app"] == {"name": "app", LIVENESS: LIVE_PROBE}


def test_empty_containers_means_every_regular_container() -> None:
    probe = {"tcpSocket": {"port": 8080}}
    out = render_healthpolicy(OWNER, spec(liveness=probe), deployment())
    assert out.problems == []
    assert list(containers(out.deployment)) == ["app", "sidecar"]  # never the init container
    assert all(c[LIVENESS] == probe for c in containers(out.deployment).values())


def test_named_containers_only() -> None:
    out = render_healthpolicy(
        OWNER, spec(containers=["sidecar"], liveness={"exec": {"command": ["true"]}}), deployment()
    )
    assert out.problems == []
    assert list(containers(out.deployment)) == ["sidecar"]


def test_unknown_container_is_a_problem_naming_it() -> None:
    out = render_healthpolicy(
        OWNER, spec(containers=["app", "worker"], liveness=LIVE_PROBE), deployment()
    )
    (problem,) = out.problems
    assert problem.startswith('spec.containers: Deployment "payments" has no container "worker"')
    assert "app, sidecar" in problem


def test_init_container_name_is_unknown() -> None:
    out = render_healthpolicy(
        OWNER, spec(containers=["migrate"], liveness=LIVE_PROBE), deployment()
    )
    assert any('no container "migrate"' in p for p in out.problems)


def test_default_mode_keeps_a_containers_own_probe() -> None:
    probe = {"httpGet": {"path": "/ready", "port": 8080}}
    out = render_healthpolicy(OWNER, spec(readiness=probe), deployment())
    assert out.problems == []
    assert READINESS not in containers(out.deployment).get("app", {})
    assert containers(out.deployment)["sidecar"][READINESS] == probe
    assert "app" not in containers(out.deployment)  # nothing of ours on it at all


def test_override_mode_replaces_a_containers_own_probe_whole() -> None:
    """Every field the policy leaves out is named with its unset value, so that apply
    (which keeps every field the intent does not name) keeps none of the user's."""
    probe = {"tcpSocket": {"port": 8081}, "periodSeconds": 5}
    out = render_healthpolicy(OWNER, spec(mode="Override", readiness=probe), deployment())
    assert out.problems == []
    whole = {"tcpSocket": {"port": 8081, "host": ""}, "periodSeconds": 5,
             "initialDelaySeconds": 0, "timeoutSeconds": 1, "successThreshold": 1,
             "failureThreshold": 3}  # fmt: skip
    assert containers(out.deployment)["app"][READINESS] == whole
    assert containers(out.deployment)["sidecar"][READINESS] == whole


def test_whole_probe_fills_only_what_the_policy_leaves_out() -> None:
    http = {"httpGet": {"path": "/r", "port": 80, "scheme": "HTTPS"}, "failureThreshold": 9}
    assert whole_probe(http) == {
        "httpGet": {"path": "/r", "port": 80, "scheme": "HTTPS", "host": "", "httpHeaders": []},
        "failureThreshold": 9, "initialDelaySeconds": 0, "periodSeconds": 10,
        "timeoutSeconds": 1, "successThreshold": 1,
    }  # fmt: skip
    grpc = whole_probe({"grpc": {"port": 9090}})
    assert grpc["grpc"] == {"port": 9090, "service": ""}
    command = whole_probe({"exec": {"command": ["true"]}})
    assert command["exec"] == {"command": ["true"]}  # an atomic list: replaced whole anyway


def test_default_mode_sends_only_the_policys_fields() -> None:
    probe = {"tcpSocket": {"port": 8081}}
    out = render_healthpolicy(OWNER, spec(readiness=probe), deployment())
    assert containers(out.deployment)["sidecar"][READINESS] == probe


def test_override_with_another_handler_than_the_containers_own_is_a_problem() -> None:
    probe = {"httpGet": {"path": "/ready", "port": 8080}}
    out = render_healthpolicy(OWNER, spec(mode="Override", readiness=probe), deployment())
    (problem,) = out.problems
    assert problem.startswith('spec.readiness: container "app" has its own readinessProbe')
    assert "tcpSocket" in problem and "httpGet" in problem


def test_default_mode_treats_a_probe_we_applied_earlier_as_ours() -> None:
    """After our first apply the live object has our probe: it must stay in the intent."""
    probe = {"tcpSocket": {"port": 8080}}
    live = deployment()
    live["spec"]["template"]["spec"]["containers"][1][READINESS] = probe  # applied by us before
    ours = {("sidecar", READINESS)}
    out = render_healthpolicy(OWNER, spec(readiness=probe), live, ours)
    assert containers(out.deployment)["sidecar"][READINESS] == probe
    assert "app" not in containers(out.deployment)  # app's probe is the user's
    # without the ownership information the same probe would count as the user's
    dropped = render_healthpolicy(OWNER, spec(readiness=probe), live, set())
    assert containers(dropped.deployment) == {}


def test_ownership_is_read_from_managed_fields_by_default() -> None:
    probe = {"tcpSocket": {"port": 8080}}
    live = deployment()
    live["spec"]["template"]["spec"]["containers"][1][READINESS] = probe
    live["metadata"]["managedFields"] = [
        managed("kubectl-client-side-apply", "app", READINESS),
        managed("appinfra-healthpolicy", "sidecar", READINESS),
    ]
    out = render_healthpolicy(OWNER, spec(readiness=probe), live)
    assert containers(out.deployment)["sidecar"][READINESS] == probe
    assert "app" not in containers(out.deployment)


def test_owned_container_fields_reads_only_our_manager() -> None:
    live = deployment()
    live["metadata"]["managedFields"] = [
        managed("appinfra-healthpolicy", "app", LIVENESS, PRE_STOP),
        managed("appinfra-serviceprofile", "sidecar", READINESS),
        managed("kubectl", "app", READINESS),
    ]
    assert owned_container_fields(live, "appinfra-healthpolicy") == {
        ("app", LIVENESS),
        ("app", PRE_STOP),
    }
    assert owned_container_fields(deployment(), "appinfra-healthpolicy") == set()


def test_named_port_must_be_declared_by_each_container_it_applies_to() -> None:
    out = render_healthpolicy(OWNER, spec(liveness=LIVE_PROBE), deployment())
    assert out.problems == [
        'spec.liveness.httpGet.port: container "sidecar" declares no port named "http"; '
        "name a declared port or use a number"
    ]


def test_named_tcp_port_checked_too_and_numbers_are_fine() -> None:
    out = render_healthpolicy(
        OWNER,
        spec(startup={"tcpSocket": {"port": "grpc"}}, liveness={"httpGet": {"port": 9000}}),
        deployment(),
    )
    assert out.problems == [
        'spec.startup.tcpSocket.port: container "app" declares no port named "grpc"; '
        "name a declared port or use a number",
        'spec.startup.tcpSocket.port: container "sidecar" declares no port named "grpc"; '
        "name a declared port or use a number",
    ]


def test_named_port_not_checked_where_default_mode_skips_the_container() -> None:
    out = render_healthpolicy(
        OWNER, spec(readiness={"tcpSocket": {"port": "admin"}}, containers=["app"]), deployment()
    )
    assert out.problems == []  # app keeps its own readiness probe; "admin" is not applied there


def test_probe_bodies_pass_through_with_unknown_fields() -> None:
    probe = {
        "grpc": {"port": 9090, "service": "health"},
        "initialDelaySeconds": 2,
        "timeoutSeconds": 3,
        "successThreshold": 1,
        "failureThreshold": 4,
        "terminationGracePeriodSeconds": 7,
        "someFutureField": {"x": 1},
    }
    out = render_healthpolicy(OWNER, spec(startup=probe), deployment())
    assert containers(out.deployment)["app"]["startupProbe"] == probe


def test_probe_bodies_are_not_shared_between_containers() -> None:
    out = render_healthpolicy(OWNER, spec(liveness={"tcpSocket": {"port": 1}}), deployment())
    app, sidecar = containers(out.deployment).values()
    assert app[LIVENESS] is not sidecar[LIVENESS]


def test_pre_stop_sleep_and_grace_period() -> None:
    shutdown = {"preStopSleepSeconds": 5, "terminationGracePeriodSeconds": 30}
    out = render_healthpolicy(OWNER, spec(gracefulShutdown=shutdown), deployment())
    assert out.problems == []
    pod = out.deployment["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] == 30
    for c in pod["containers"]:
        assert c["lifecycle"] == {"preStop": {"sleep": {"seconds": 5}}}


def test_pre_stop_default_mode_keeps_a_containers_own_hook() -> None:
    live = deployment()
    own = {"exec": {"command": ["/bin/drain"]}}
    live["spec"]["template"]["spec"]["containers"][0]["lifecycle"] = {"preStop": own}
    out = render_healthpolicy(OWNER, spec(gracefulShutdown={"preStopSleepSeconds": 5}), live)
    assert "app" not in containers(out.deployment)
    assert containers(out.deployment)["sidecar"]["lifecycle"]["preStop"] == {
        "sleep": {"seconds": 5}
    }
    # ...unless the hook is the one we set earlier
    live["spec"]["template"]["spec"]["containers"][0]["lifecycle"] = {
        "preStop": {"sleep": {"seconds": 3}}
    }
    again = render_healthpolicy(
        OWNER, spec(gracefulShutdown={"preStopSleepSeconds": 5}), live, {("app", PRE_STOP)}
    )
    assert containers(again.deployment)["app"]["lifecycle"]["preStop"] == {"sleep": {"seconds": 5}}


def test_pre_stop_override_of_an_exec_hook_is_a_problem() -> None:
    live = deployment()
    live["spec"]["template"]["spec"]["containers"][0]["lifecycle"] = {
        "preStop": {"exec": {"command": ["/bin/drain"]}}
    }
    out = render_healthpolicy(
        OWNER, spec(mode="Override", gracefulShutdown={"preStopSleepSeconds": 5}), live
    )
    (problem,) = out.problems
    assert problem.startswith(
        'spec.gracefulShutdown: container "app" has its own lifecycle.preStop'
    )


def test_zero_sleep_sets_no_hook() -> None:
    out = render_healthpolicy(
        OWNER,
        spec(gracefulShutdown={"preStopSleepSeconds": 0, "terminationGracePeriodSeconds": 10}),
        deployment(),
    )
    assert out.deployment["spec"]["template"]["spec"] == {"terminationGracePeriodSeconds": 10}


def test_sleep_not_shorter_than_the_live_grace_period_is_a_problem() -> None:
    out = render_healthpolicy(
        OWNER,
        spec(gracefulShutdown={"preStopSleepSeconds": 45}),
        deployment(terminationGracePeriodSeconds=40),
    )
    (problem,) = out.problems
    assert problem.startswith("spec.gracefulShutdown.preStopSleepSeconds: 45")
    assert "(40)" in problem
    # the API server's default of 30 counts when the pod spec leaves it unset
    defaulted = render_healthpolicy(
        OWNER, spec(gracefulShutdown={"preStopSleepSeconds": 30}), deployment()
    )
    assert len(defaulted.problems) == 1
    fine = render_healthpolicy(
        OWNER, spec(gracefulShutdown={"preStopSleepSeconds": 29}), deployment()
    )
    assert fine.problems == []


def test_render_does_not_touch_its_inputs() -> None:
    live = deployment()
    before = copy.deepcopy(live)
    render_healthpolicy(OWNER, spec(mode="Override", liveness=LIVE_PROBE), live)
    assert live == before


# The health verdict, from Deployment objects as the API server reports them.


def status_deployment(*, generation: int = 2, desired: int = 3, **status: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "payments", "namespace": "shop", "generation": generation},
        "spec": {"replicas": desired},
        "status": status,
    }


def condition(type_: str, status: str, reason: str, message: str = "") -> dict[str, str]:
    return {"type": type_, "status": status, "reason": reason, "message": message}


AVAILABLE = condition("Available", "True", "MinimumReplicasAvailable")
COMPLETE = condition(
    "Progressing",
    "True",
    "NewReplicaSetAvailable",
    'ReplicaSet "payments-7d9" has successfully progressed.',
)
UPDATING = condition(
    "Progressing", "True", "ReplicaSetUpdated", 'ReplicaSet "payments-7d9" is progressing.'
)


@dataclass(frozen=True)
class Verdict:
    """What a verdict must say: its reason, and whichever of status, message and replica
    counts the case pins down (None and (): not asserted)."""

    reason: str
    status: bool | None = None
    starts: str | None = None
    contains: tuple[str, ...] = ()
    replicas: dict[str, int] | None = None


# Status fields of three replicas all updated, ready and available (generation 2).
ROLLED_OUT = dict(
    observedGeneration=2, replicas=3, updatedReplicas=3, readyReplicas=3, availableReplicas=3
)
NO_MINIMUM = condition(
    "Available",
    "False",
    "MinimumReplicasUnavailable",
    "Deployment does not have minimum availability.",
)
TIMED_OUT = condition(
    "Progressing",
    "False",
    "ProgressDeadlineExceeded",
    'ReplicaSet "payments-7d9" has timed out progressing.',
)
VERDICTS: dict[str, tuple[dict[str, Any], Verdict]] = {
    "available": (
        status_deployment(**ROLLED_OUT, conditions=[AVAILABLE, COMPLETE]),
        Verdict(
            "Available",
            True,
            contains=("3",),
            replicas={"desired": 3, "updated": 3, "ready": 3, "available": 3},
        ),
    ),
    "rollout_in_progress_while_new_pods_roll_in": (
        status_deployment(
            observedGeneration=2,
            replicas=4,
            updatedReplicas=1,
            readyReplicas=3,
            availableReplicas=3,
            unavailableReplicas=1,
            conditions=[AVAILABLE, UPDATING],
        ),
        Verdict(
            "RolloutInProgress",
            False,
            starts="1 of 3 replicas updated",
            replicas={"desired": 3, "updated": 1, "ready": 3, "available": 3},
        ),
    ),
    "rollout_in_progress_while_old_pods_terminate": (
        status_deployment(
            observedGeneration=2,
            replicas=4,
            updatedReplicas=3,
            readyReplicas=4,
            availableReplicas=4,
            conditions=[AVAILABLE, UPDATING],
        ),
        Verdict("RolloutInProgress", starts="1 old replicas pending termination"),
    ),
    "rollout_in_progress_until_the_controller_observes_the_spec": (
        status_deployment(generation=3, **ROLLED_OUT, conditions=[AVAILABLE, COMPLETE]),
        Verdict("RolloutInProgress", contains=("generation 3",)),
    ),
    "new_deployment_without_status_is_in_progress": (
        status_deployment(generation=1),
        Verdict(
            "RolloutInProgress", replicas={"desired": 3, "updated": 0, "ready": 0, "available": 0}
        ),
    ),
    "updated_pods_not_yet_available_during_rollout": (
        status_deployment(
            observedGeneration=2,
            replicas=3,
            updatedReplicas=3,
            readyReplicas=2,
            availableReplicas=2,
            unavailableReplicas=1,
            conditions=[AVAILABLE, UPDATING],
        ),
        Verdict("RolloutInProgress", starts="2 of 3 updated replicas available"),
    ),
    "unavailable_after_a_finished_rollout": (
        status_deployment(
            observedGeneration=2,
            replicas=3,
            updatedReplicas=3,
            readyReplicas=1,
            availableReplicas=1,
            unavailableReplicas=2,
            conditions=[NO_MINIMUM, COMPLETE],
        ),
        Verdict(
            "Unavailable",
            False,
            starts="1 of 3 replicas available",
            replicas={"desired": 3, "updated": 3, "ready": 1, "available": 1},
        ),
    ),
    "unavailable_when_the_available_condition_is_false": (
        status_deployment(
            **ROLLED_OUT,
            conditions=[
                condition("Available", "False", "MinimumReplicasUnavailable", "no minimum"),
                COMPLETE,
            ],
        ),
        Verdict("Unavailable", contains=("no minimum",)),
    ),
    "progress_deadline_exceeded": (
        status_deployment(
            observedGeneration=2,
            replicas=4,
            updatedReplicas=1,
            readyReplicas=3,
            availableReplicas=3,
            unavailableReplicas=1,
            conditions=[AVAILABLE, TIMED_OUT],
        ),
        Verdict(
            "ProgressDeadlineExceeded",
            False,
            contains=("has timed out progressing", "1 updated", "kubectl rollout undo"),
        ),
    ),
    "scaled_to_zero_is_available": (
        status_deployment(desired=0, observedGeneration=2),
        Verdict("Available", True),
    ),
}


@pytest.mark.parametrize(("deployment_", "want"), VERDICTS.values(), ids=VERDICTS)
def test_verdict(deployment_: dict[str, Any], want: Verdict) -> None:
    v = health_verdict(deployment_)
    assert v.reason == want.reason
    if want.status is not None:
        assert v.status == want.status
    if want.starts is not None:
        assert v.message.startswith(want.starts), v.message
    for text in want.contains:
        assert text in v.message, v.message
    if want.replicas is not None:
        assert v.replicas == want.replicas


def test_verdict_missing_spec_replicas_means_one() -> None:
    d = status_deployment(
        observedGeneration=2, replicas=1, updatedReplicas=1, readyReplicas=1, availableReplicas=1
    )
    del d["spec"]["replicas"]
    v = health_verdict(d)
    assert v.reason == "Available" and v.replicas["desired"] == 1


counts = st.integers(0, 6)


@given(
    desired=counts,
    updated=counts,
    total=counts,
    ready=counts,
    available=counts,
    generation=st.integers(1, 3),
    observed=st.integers(0, 3),
    progressing=st.sampled_from([None, COMPLETE, UPDATING]),
)
def test_verdict_available_exactly_when_kubectl_would_call_the_rollout_done(
    desired: int,
    updated: int,
    total: int,
    ready: int,
    available: int,
    generation: int,
    observed: int,
    progressing: dict[str, str] | None,
) -> None:
    status: dict[str, Any] = {
        "observedGeneration": observed,
        "replicas": total,
        "updatedReplicas": updated,
        "readyReplicas": ready,
        "availableReplicas": available,
    }
    if progressing is not None:
        status["conditions"] = [progressing]
    v = health_verdict(status_deployment(generation=generation, desired=desired, **status))
    done = (
        observed >= generation and updated == desired and total <= updated and available >= desired
    )
    assert (v.reason == "Available") == done == v.status
    assert v.reason in {"Available", "RolloutInProgress", "Unavailable"}


def test_hand_back_takes_the_live_value_of_fields_another_manager_shares() -> None:
    """Override took part of app's readiness probe (the user's manager kept the rest):
    it is handed back whole; sidecar's liveness is ours alone and is simply released."""
    live = deployment()
    live["spec"]["template"]["spec"]["containers"][1][LIVENESS] = LIVE_PROBE
    live["metadata"]["managedFields"] = [
        managed("kubectl-client-side-apply", "app", READINESS),
        managed("appinfra-healthpolicy", "app", READINESS),
        managed("appinfra-healthpolicy", "sidecar", LIVENESS),
    ]
    intent = hand_back_intent(live, "appinfra-healthpolicy")
    assert intent is not None
    assert intent["metadata"] == {"name": "payments", "namespace": "shop"}
    assert containers(intent) == {"app": {"name": "app", READINESS: APP_OWN_READINESS}}
    assert containers(intent)["app"][READINESS] is not APP_OWN_READINESS  # a copy


def test_nothing_to_hand_back_when_no_other_manager_shares_our_fields() -> None:
    live = deployment()
    live["metadata"]["managedFields"] = [managed("appinfra-healthpolicy", "sidecar", LIVENESS)]
    assert hand_back_intent(live, "appinfra-healthpolicy") is None
    assert hand_back_intent(deployment(), "appinfra-healthpolicy") is None
