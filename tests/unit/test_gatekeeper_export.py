"""Gatekeeper's violation export as it ships, read by Vigil's one normaliser: golden
cases built from the upstream code, docs and tests (cited per case), the decision
identity rule, Dapr's CloudEvent envelope, and the refusals.

Upstream read:

- open-policy-agent/gatekeeper @ dd8507eb97f5ca24dbee34c95d8e6ffa053cb8a0
  (``pkg/export/util/util.go`` ExportMsg and the marker messages, ``pkg/audit/manager.go``
  ``audit()`` / ``violationMsg``, ``pkg/webhook/policy.go``
  ``newAdmissionViolationExportMessage`` / ``exportAdmissionViolation``,
  ``pkg/export/disk/disk.go`` ``Publish``, ``website/docs/export.md``, ``test/export/``,
  ``test/bats/``, ``pkg/webhook/policy_test.go``);
- dapr/components-contrib @ c23900d2760de2061143587c16c5e30ab3f092cf
  (``pubsub/envelope.go`` NewCloudEventsEnvelope, ``pubsub/jetstream/jetstream.go`` Publish);
- dapr/dapr @ d8450742ce3260d93a2346f4398a1e60d019a45b (``pkg/api/grpc/grpc.go`` PublishEvent,
  ``pkg/runtime/pubsub/cloudevents.go``); dapr/go-sdk @ 2d0b08509cf27a60c14238e1f7f8e9ff10ddaf13
  (``client/pubsub.go`` PublishEvent: ``[]byte`` data goes with no content type).
"""

from __future__ import annotations

import base64
from collections import Counter
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from contracts.codec import encode_json
from contracts.decisions import AuditFinished, AuditStarted, DaprCloudEvent, Decision, ExportMsg
from contracts.intake import Accepted, Rejected, export_decision_id, normalise, parse_rfc3339
from services.audit_report_writer import core as audit_core

RUN = "2023-07-18T21:21:52Z"


def _doc(**fields: Any) -> bytes:
    return msgspec.json.encode({k: v for k, v in fields.items() if v is not None})


def _accepted(line: bytes) -> Decision | AuditStarted | AuditFinished:
    result = normalise(line)
    assert isinstance(result, Accepted), result
    return result.message


def _decision(line: bytes) -> Decision:
    message = _accepted(line)
    assert isinstance(message, Decision)
    return message


def audited(pod: str, labels: dict[str, str], run: str = RUN) -> bytes:
    """A violation_audited line as website/docs/export.md ("Violations") shows it and
    pkg/audit/manager.go violationMsg builds it: the K8sRequiredLabels constraint
    pod-must-have-test of test/export/pod_must_have_test.yaml on a Pod of
    test/export/nginx_deployment.yaml (labels app: nginx, plus pod-template-hash)."""
    return _doc(
        id=run,
        details={"missing_labels": ["test"]},
        eventType="violation_audited",
        group="constraints.gatekeeper.sh",
        version="v1beta1",
        kind="K8sRequiredLabels",
        name="pod-must-have-test",
        message='you must provide labels: {"test"}',
        enforcementAction="deny",
        resourceAPIVersion="v1",
        resourceKind="Pod",
        resourceNamespace="nginx",
        resourceName=pod,
        resourceLabels=labels,
    )


def marker(message: str, run: str = RUN) -> bytes:
    """pkg/audit/manager.go audit(): ExportMsg{Message: AuditStartedMsg|AuditCompletedMsg, ID: timestamp}
    (util.go: "audit is started" / "audit is completed"; the disk driver writes them as lines)."""
    return _doc(id=run, message=message)


# --- audit runs ----------------------------------------------------------------------------


def test_an_audit_run_with_markers_and_several_violations() -> None:
    """test/export/nginx_deployment.yaml runs 4 replicas; test/bats/helpers.bash total_violations
    expects one exported line per violation of the run (id = the run's auditTimestamp,
    eventType violation_audited, name pod-must-have-test): 4 lines between the markers."""
    pods = [f"nginx-deployment-cd55c47f5-{suffix}" for suffix in ("2b84x", "8kq2p", "fm7tz", "x9w4d")]
    lines = [marker("audit is started")]
    lines += [audited(pod, {"app": "nginx", "pod-template-hash": "cd55c47f5"}) for pod in pods]
    lines.append(marker("audit is completed"))
    messages = [_accepted(line) for line in lines]

    start, *violations, end = messages
    assert start == AuditStarted(audit_id=RUN, time=parse_rfc3339(RUN))
    assert end == AuditFinished(audit_id=RUN, time=parse_rfc3339(RUN))  # the marker carries no end time
    assert len({d.id for d in violations}) == 4  # one decision per violation, none collapsed
    first = violations[0]
    assert isinstance(first, Decision)
    assert (first.source, first.event_type, first.action, first.rule) == (
        "gatekeeper", "violation_audited", "deny", "K8sRequiredLabels/pod-must-have-test",
    )  # fmt: skip
    assert (first.constraint_group, first.constraint_version, first.constraint_kind, first.constraint_name) == (
        "constraints.gatekeeper.sh", "v1beta1", "K8sRequiredLabels", "pod-must-have-test",
    )  # fmt: skip
    assert (first.resource_group, first.resource_api_version, first.resource_kind) == ("", "v1", "Pod")
    assert (first.resource_namespace, first.resource_name) == ("nginx", pods[0])
    assert first.resource_labels == {"app": "nginx", "pod-template-hash": "cd55c47f5"}
    assert first.message == 'you must provide labels: {"test"}'
    assert first.details == {"missing_labels": ["test"]}
    assert first.audit_id == RUN and first.time == parse_rfc3339(RUN)
    assert first.request_uid == "" and first.dry_run is None  # audit records carry no request
    assert [_accepted(line) for line in lines] == messages  # the same lines again: the same decisions

    state = audit_core.State()
    effects = [e for m in messages for e in audit_core.step(state, m, keep_runs=3)]
    finish = effects[-1]
    assert isinstance(finish, audit_core.FinishRun) and finish.name == "2023-07-18T21_21_52Z"
    summary = msgspec.json.decode(finish.summary)
    assert summary["violations"] == 4
    assert summary["byConstraint"] == {"K8sRequiredLabels/pod-must-have-test": 4}


def test_the_issue_lines_are_no_longer_refused() -> None:
    """The line the issue quotes (website/docs/export.md, disk quick start) was answered
    "Invalid value 'K8sRequiredLabels' - at $.kind"; its run marker "Object missing
    required field timeStamp"."""
    line = (
        b'{"id":"2025-03-05T00:37:13Z","details":{"missing_labels":["test"]},"eventType":"violation_audited",'
        b'"group":"constraints.gatekeeper.sh","version":"v1beta1","kind":"K8sRequiredLabels",'
        b'"name":"pod-must-have-test","message":"you must provide labels: {\\"test\\"}","enforcementAction":"deny",'
        b'"resourceAPIVersion":"v1","resourceKind":"Pod","resourceNamespace":"nginx",'
        b'"resourceName":"nginx-deployment-2-79479fc6db-7qbnm","resourceLabels":{"app":"nginx-ingress",'
        b'"app.kubernetes.io/component":"controller","pod-template-hash":"79479fc6db"}}'
    )
    decision = _decision(line)
    assert decision.audit_id == "2025-03-05T00:37:13Z"
    assert decision.resource_labels["app.kubernetes.io/component"] == "controller"
    assert isinstance(_accepted(marker("audit is started", "2025-03-05T00:37:13Z")), AuditStarted)


def test_scoped_enforcement_actions_of_an_audit() -> None:
    """test/bats/tests/constraints/all_cm_must_have_gatekeeper_scoped{,_audit}.yaml: two
    scoped constraints match test/bats/tests/bad/bad_cm_scoped.yaml; at the audit
    enforcement point one denies, the other warns. pkg/audit/manager.go sends
    enforcementAction "scoped" and enforcementActions = the result's scoped actions.
    Same resource, message and details: two decisions, told apart by the constraint."""

    def line(name: str, actions: list[str]) -> bytes:
        return _doc(
            id=RUN, details={"missing_labels": ["gatekeeper"]}, eventType="violation_audited",
            group="constraints.gatekeeper.sh", version="v1beta1", kind="K8sRequiredLabels", name=name,
            message='you must provide labels: {"gatekeeper"}', enforcementAction="scoped",
            enforcementActions=actions, constraintAnnotations={"owner": "platform"}, resourceAPIVersion="v1",
            resourceKind="ConfigMap", resourceNamespace="gatekeeper-test-playground-scoped",
            resourceName="bad-cm-scoped", resourceLabels={"test.gatekeeper.sh/audit": "yes"},
        )  # fmt: skip

    deny = _decision(line("cm-must-have-gk-scoped", ["deny"]))
    warn = _decision(line("cm-must-have-gk-scoped-audit", ["warn"]))
    assert deny.id != warn.id
    assert (deny.action, deny.enforcement_actions) == ("scoped", ("deny",))
    assert (warn.action, warn.enforcement_actions) == ("scoped", ("warn",))
    assert deny.constraint_annotations == {"owner": "platform"}


# --- admission ------------------------------------------------------------------------------

ADMISSION_TIME = "2026-07-29T10:15:30.123456789Z"


def admission(msg: str, action: str, constraint: str, scoped: list[str] | None = None) -> bytes:
    """pkg/webhook/policy_test.go TestProcessValidationResultsExportsAdmissionViolations: one
    DELETE of Pod ns1/deleted-pod (request "delete-request", subresource status, dry run),
    by system:serviceaccount:ns1:controller; constraints Foo/<name> (newConstraint),
    messages "deny", "warn", "dryrun", "scoped" (scoped actions deny, warn).
    policy.go newAdmissionViolationExportMessage: one timestamp (RFC3339Nano) per request."""
    return _doc(
        id="delete-request", details=None, eventType="violation_admission", group="constraints.gatekeeper.sh",
        version="v1beta1", kind="Foo", name=constraint, message=msg, enforcementAction=action,
        enforcementActions=scoped, resourceAPIVersion="v1", resourceKind="Pod", resourceNamespace="ns1",
        resourceName="deleted-pod", resourceLabels={"app": "demo"}, timestamp=ADMISSION_TIME, operation="DELETE",
        requestResource="pods", requestSubresource="status", requestUsername="system:serviceaccount:ns1:controller",
        requestUserUID="service-account-1", requestUserGroups=["system:serviceaccounts", "system:authenticated"],
        dryRun=True,
    )  # fmt: skip


def test_several_violations_of_one_admission_request() -> None:
    lines = [
        admission("deny", "deny", "deny"),
        admission("warn", "warn", "warn"),
        admission("dryrun", "dryrun", "dryrun"),
        admission("scoped", "scoped", "scoped", ["deny", "warn"]),
    ]
    decisions = [_decision(line) for line in lines]
    assert len({d.id for d in decisions}) == 4  # one request id, four decisions
    assert [d.action for d in decisions] == ["deny", "warn", "dryrun", "scoped"]
    assert decisions[3].enforcement_actions == ("deny", "warn")
    for d in decisions:
        assert (d.event_type, d.request_uid) == ("violation_admission", "delete-request")
        assert d.time == parse_rfc3339(ADMISSION_TIME) == 1_785_320_130_123_456_789
        assert (d.operation, d.request_resource, d.request_subresource) == ("DELETE", "pods", "status")
        assert (d.request_username, d.request_user_uid) == ("system:serviceaccount:ns1:controller", "service-account-1")
        assert d.request_user_groups == ("system:serviceaccounts", "system:authenticated")
        assert d.dry_run is True and d.audit_id == ""
        assert (d.resource_namespace, d.resource_name, d.resource_labels) == ("ns1", "deleted-pod", {"app": "demo"})


def test_an_admission_violation_that_is_not_a_dry_run() -> None:
    """pkg/webhook/policy_test.go (the Handle test before the one above): request-1, CREATE of
    Pod ns1/acbd labelled app: demo by alice@example.com (groups developers,
    system:authenticated), dryRun false, a dryrun constraint annotated owner: platform
    (kubectl's last-applied-configuration dropped by Gatekeeper), message "Maybe this will work?".
    util.go: DryRun is a pointer so admission records emit false."""
    line = _doc(
        id="request-1", eventType="violation_admission", kind="K8sGoodRego", name="constraint",
        message="Maybe this will work?", enforcementAction="dryrun", constraintAnnotations={"owner": "platform"},
        resourceGroup="", resourceAPIVersion="v1", resourceKind="Pod", resourceNamespace="ns1", resourceName="acbd",
        resourceLabels={"app": "demo"}, timestamp="2026-07-29T10:15:31.5Z", operation="CREATE",
        requestResource="pods", requestUsername="alice@example.com", requestUserUID="user-1",
        requestUserGroups=["developers", "system:authenticated"], dryRun=False,
    )  # fmt: skip
    d = _decision(line)
    assert d.dry_run is False and d.action == "dryrun" and d.rule == "K8sGoodRego/constraint"
    assert d.constraint_annotations == {"owner": "platform"} and d.request_username == "alice@example.com"
    assert d.time == 1_785_320_131_500_000_000


# --- identity -------------------------------------------------------------------------------

IDENTITY_FIELDS = {
    "id": "other", "timestamp": "2026-07-29T10:15:30.2Z", "group": "g",
    "version": "v1", "kind": "K", "namespace": "n", "name": "c", "resourceGroup": "apps",
    "resourceAPIVersion": "v2", "resourceKind": "Deployment", "resourceNamespace": "x", "resourceName": "y",
    "message": "m", "enforcementAction": "warn", "enforcementActions": ["warn"], "details": {"k": 1},
}  # fmt: skip
DESCRIPTIVE_FIELDS = {
    "resourceLabels": {"app": "other"}, "constraintAnnotations": {"a": "b"}, "operation": "UPDATE",
    "requestUsername": "bob", "requestUserGroups": ["g"], "dryRun": False,
}  # fmt: skip


@pytest.mark.parametrize("field", sorted(IDENTITY_FIELDS))
def test_a_violation_differing_in_an_identity_field_is_another_decision(field: str) -> None:
    base = msgspec.json.decode(admission("deny", "deny", "deny"))
    other = _decision(msgspec.json.encode({**base, field: IDENTITY_FIELDS[field]}))
    assert other.id != _decision(admission("deny", "deny", "deny")).id


def test_an_audited_and_an_admission_violation_are_two_decisions() -> None:
    audit = msgspec.json.decode(audited("p", {}))
    as_admission = _decision(msgspec.json.encode({**audit, "eventType": "violation_admission"}))
    assert as_admission.id != _decision(audited("p", {})).id


@pytest.mark.parametrize("field", sorted(DESCRIPTIVE_FIELDS))
def test_labels_annotations_and_request_details_do_not_make_another_decision(field: str) -> None:
    base = msgspec.json.decode(admission("deny", "deny", "deny"))
    same = _decision(msgspec.json.encode({**base, field: DESCRIPTIVE_FIELDS[field]}))
    assert same.id == _decision(admission("deny", "deny", "deny")).id


@given(st.dictionaries(st.text(max_size=6), st.integers() | st.text(max_size=4), max_size=5))
def test_the_id_does_not_depend_on_the_order_of_keys_in_details(details: dict[str, object]) -> None:
    """Go sorts map keys, a re-encoder may not: the details are hashed with sorted keys."""
    forward = ExportMsg(eventType="violation_audited", id=RUN, details=details)
    backward = ExportMsg(eventType="violation_audited", id=RUN, details=dict(reversed(list(details.items()))))
    assert export_decision_id(forward) == export_decision_id(backward)
    assert export_decision_id(forward).startswith("gk:") and len(export_decision_id(forward)) == 35


def test_the_normalised_form_is_a_fixed_point() -> None:
    """What the intake publishes (Vigil's tagged JSON) reads back as the same decision, so the
    archiver and the audit writer see what the intake saw."""
    for line in (audited("p", {"a": "b"}), admission("scoped", "scoped", "s", ["deny", "warn"])):
        result = normalise(line)
        assert isinstance(result, Accepted)
        assert normalise(encode_json(result.message)) == result


# --- Dapr's CloudEvent envelope ----------------------------------------------------------------


def cloud_event(data: bytes, content_type: str = "", **extra: Any) -> bytes:
    """The envelope Dapr's runtime builds for Gatekeeper's publish: pkg/export/dapr/dapr.go
    PublishEvent(ctx, component, topic, jsonData) → go-sdk sends []byte with no content type
    → dapr's grpc PublishEvent → NewCloudEvent → components-contrib NewCloudEventsEnvelope:
    content type defaults to text/plain, so ``data`` is the JSON as a string (the
    fake-subscriber in test/export strconv.Unquote's it); application/json embeds the
    object; a binary type goes in data_base64. Source = the app id (Helm: "audit")."""
    doc: dict[str, Any] = {
        "id": "5929aaac-a5e2-4ca1-859c-edfe73f11565", "specversion": "1.0", "source": "audit",
        "type": "com.dapr.event.sent", "topic": "vigil.decisions.intake", "pubsubname": "pubsub",
        "traceid": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "tracestate": "",
        "time": "2023-07-18T21:21:53Z", "datacontenttype": content_type or "text/plain",
    }  # fmt: skip
    if content_type == "application/json":
        doc["data"] = msgspec.json.decode(data)
    elif content_type == "application/octet-stream":
        doc["data_base64"] = base64.b64encode(data).decode()
    else:
        doc["data"] = data.decode()
    return msgspec.json.encode({**doc, **extra})


@pytest.mark.parametrize("content_type", ["", "application/json", "application/octet-stream"])
def test_a_cloud_event_is_read_as_the_message_it_wraps(content_type: str) -> None:
    for line in (audited("p", {"app": "nginx"}), marker("audit is started"), marker("audit is completed")):
        wrapped = cloud_event(line, content_type)
        assert msgspec.json.decode(wrapped, type=DaprCloudEvent).specversion == "1.0"  # the documented contract
        assert normalise(wrapped) == normalise(line)  # same message, same id: one row whichever way it came


def test_a_second_envelope_around_the_same_violation_is_the_same_decision() -> None:
    """Dapr's jetstream component sets Nats-Msg-Id = the envelope id, a new uuid per publish:
    a violation published twice arrives in two envelopes, and is still one decision."""
    line = audited("p", {"app": "nginx"})
    again = cloud_event(line, id="3f1c9c9e-0000-4000-8000-000000000000", time="2023-07-18T21:30:00Z")
    assert normalise(cloud_event(line)) == normalise(again)


# --- refusals ------------------------------------------------------------------------------------

REFUSED = {
    _doc(id="not-a-time", eventType="violation_audited", kind="K"): "id of a violation_audited must be an RFC3339",
    _doc(id="req", eventType="violation_admission", timestamp="soon"): "timestamp of a violation_admission",
    _doc(id="", eventType="violation_admission", timestamp=ADMISSION_TIME): "the request's uid) is empty",
    _doc(id="audit1", message="audit is started"): "id of an audit run marker must be an RFC3339",
    _doc(id=RUN, message="audit is in progress"): "no eventType, and message 'audit is in progress'",
    _doc(id=RUN, eventType="violation", kind="K8sRequiredLabels"): "eventType 'violation' is none of",
    _doc(id=RUN, eventType="violation_audited", resourceLabels={"a": 1}): "Expected `str`, got `int`",
    cloud_event(cloud_event(marker("audit is started"))): "a CloudEvent inside a CloudEvent",
    _doc(specversion="1.0", data_base64="%%%"): "data_base64 is not base64",
    _doc(specversion="1.0"): "CloudEvent without data",
    cloud_event(b"{not json"): "invalid JSON",
}


@pytest.mark.parametrize("line", list(REFUSED), ids=list(REFUSED.values()))
def test_bad_export_lines_are_refused_with_a_reason(line: bytes) -> None:
    result = normalise(line)
    assert isinstance(result, Rejected), result
    assert REFUSED[line] in result.reason, result.reason


def test_refusal_kinds_are_the_counters_the_intake_uses() -> None:
    kinds = Counter(r.kind for r in map(normalise, REFUSED) if isinstance(r, Rejected))
    assert set(kinds) <= {"invalid_fields", "invalid_json"}
