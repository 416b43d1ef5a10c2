"""deploy/helm/tuya-events: the chart lints, renders, and what it renders is valid Kubernetes.

``helm`` is the pinned build from ``scripts/ensure-deploy-tools.sh`` (``make test-deps``) in
``.cache/bin``. Every rendered manifest of the core API groups is validated (strict: unknown
fields are errors) with kubernetes-validate against the oldest Kubernetes the chart supports
(its kubeVersion, 1.25) and the newest schema the package has. Its schemas do not cover the
Prometheus Operator's CRDs (monitoring.coreos.com/v1), so ServiceMonitor and PodMonitor are
checked structurally here: their selectors, port names and paths against what the chart's
Service and pods really expose. The configuration inside the ConfigMap is validated with the
daemon's own loader, reading the secret from the rendered Secret.
"""

from __future__ import annotations

import base64
import copy
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.support.paths import ROOT
from tuya_events.config.loader import settings_from_mapping
from tuya_events.config.settings import catalogue_path, state_directory

CHART = ROOT / "deploy" / "helm" / "tuya-events"
HELM = ROOT / ".cache" / "bin" / "helm"
KUBE_VERSIONS = ("1.25.0", kubernetes_validate.utils.latest_version())
SECRETS_DIR = "/etc/tuya-events/secrets"
STATE_DIR = "/var/lib/tuya-events"
ACCESS_SECRET = "a" * 32

# Prometheus (kube-prometheus-stack) in the namespace "monitoring", as values.yaml suggests.
PROMETHEUS_PEER = {
    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}},
    "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}},
}

# Everything optional turned on at once.
ALL_ON = {
    "persistence": {"enabled": True, "storageClass": "fast"},
    "networkPolicy": {"enabled": True, "metricsFrom": [PROMETHEUS_PEER]},
    "serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}},
    "podMonitor": {"enabled": True},
    "secret": {"existingSecret": "tuya-credentials", "accessSecretKey": "client_secret"},
    "config": {"tuya": {"access_id": "access0id0000000", "region": "us"}},
}
CONFIGURED = {
    "config": {"tuya": {"access_id": "access0id0000000", "region": "eu"}},
    "secret": {"accessSecret": ACCESS_SECRET, "extraFiles": {"webhook_secret": "whsec_x"}},
}


def helm(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    assert HELM.is_file(), f"{HELM} is missing: run `make test-deps` (ensure-deploy-tools.sh)"
    result = subprocess.run([str(HELM), *args], capture_output=True, text=True, timeout=120)
    if check:
        assert result.returncode == 0, result.stdout + result.stderr
    return result


def values_file(tmp_path: Path, values: dict[str, Any] | None) -> list[str]:
    if values is None:
        return []
    path = tmp_path / f"values-{len(list(tmp_path.glob('values-*')))}.yaml"
    path.write_text(yaml.safe_dump(values))
    return ["--values", str(path)]


def render(tmp_path: Path, values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    output = helm("template", "release", str(CHART), *values_file(tmp_path, values)).stdout
    return [doc for doc in yaml.safe_load_all(output) if doc]


def by_kind(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    kinds: dict[str, dict[str, Any]] = {}
    for doc in docs:
        assert doc["kind"] not in kinds, f"two {doc['kind']}s"
        kinds[doc["kind"]] = doc
    return kinds


def workload(docs: list[dict[str, Any]]) -> dict[str, Any]:
    (found,) = [doc for doc in docs if doc["kind"] in ("Deployment", "StatefulSet")]
    return found


def container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    (only,) = workload(docs)["spec"]["template"]["spec"]["containers"]
    return only


def rendered_config(docs: list[dict[str, Any]]) -> dict[str, Any]:
    return yaml.safe_load(by_kind(docs)["ConfigMap"]["data"]["config.yaml"])


# -- helm's own checks -------------------------------------------------------------------------


def test_helm_lint_default_values() -> None:
    result = helm("lint", "--strict", str(CHART))
    assert "0 chart(s) failed" in result.stdout


def test_helm_lint_everything_enabled(tmp_path: Path) -> None:
    result = helm("lint", "--strict", str(CHART), *values_file(tmp_path, ALL_ON))
    assert "0 chart(s) failed" in result.stdout


def test_helm_lint_reports_a_broken_chart(tmp_path: Path) -> None:
    """The lint above can fail: a template that does not parse is an error."""
    broken = tmp_path / "tuya-events"
    subprocess.run(["cp", "-r", str(CHART), str(broken)], check=True)
    (broken / "templates" / "broken.yaml").write_text("kind: {{ .Values.nothing | nosuchfunc }}\n")
    result = helm("lint", "--strict", str(broken), check=False)
    assert result.returncode != 0
    assert "nosuchfunc" in result.stdout + result.stderr


# -- every manifest against Kubernetes' schemas ------------------------------------------------

CRD_KINDS = {"ServiceMonitor", "PodMonitor"}


def validate_core(docs: list[dict[str, Any]]) -> list[str]:
    validated = []
    for doc in docs:
        if doc["apiVersion"] == "monitoring.coreos.com/v1":
            assert doc["kind"] in CRD_KINDS
            continue
        for version in KUBE_VERSIONS:
            kubernetes_validate.validate(doc, version, strict=True)
        validated.append(doc["kind"])
    return validated


def test_default_manifests_validate_against_kubernetes_schemas(tmp_path: Path) -> None:
    docs = render(tmp_path)
    assert sorted(validate_core(docs)) == sorted(
        ["ConfigMap", "Deployment", "PodDisruptionBudget", "Secret", "Service", "ServiceAccount"]
    )


def test_everything_enabled_validates_against_kubernetes_schemas(tmp_path: Path) -> None:
    docs = render(tmp_path, ALL_ON)
    kinds = sorted(doc["kind"] for doc in docs)
    assert kinds == sorted(
        [
            "ConfigMap",
            "NetworkPolicy",
            "PodDisruptionBudget",
            "PodMonitor",
            "Service",
            "ServiceAccount",
            "ServiceMonitor",
            "StatefulSet",
        ]
    ), "existingSecret: no Secret rendered"
    assert sorted(validate_core(docs)) == sorted(set(kinds) - CRD_KINDS)


def test_schema_validation_rejects_a_wrong_manifest(tmp_path: Path) -> None:
    """The validation above can fail: a misspelt field and a wrongly typed one are caught."""
    deployment = copy.deepcopy(workload(render(tmp_path)))
    probe = deployment["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]
    probe["httpGett"] = probe.pop("httpGet")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBE_VERSIONS[0], strict=True)
    deployment = copy.deepcopy(workload(render(tmp_path)))
    deployment["spec"]["replicas"] = "two"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBE_VERSIONS[-1], strict=True)


def test_monitors_select_the_chart_s_service_and_pods_by_real_port_names(tmp_path: Path) -> None:
    docs = render(tmp_path, ALL_ON)
    kinds = by_kind(docs)
    service, pod = kinds["Service"], workload(docs)["spec"]["template"]
    service_ports = {port["name"] for port in service["spec"]["ports"]}
    container_ports = {port["name"] for port in container(docs)["ports"]}

    monitor = kinds["ServiceMonitor"]
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["default"]}
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] in service_ports
    assert endpoint["path"] == "/metrics"
    assert set(endpoint) <= {"port", "path", "interval", "scrapeTimeout"}

    pod_monitor = kinds["PodMonitor"]
    selector = pod_monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= pod["metadata"]["labels"].items()
    (endpoint,) = pod_monitor["spec"]["podMetricsEndpoints"]
    assert endpoint["port"] in container_ports
    assert endpoint["path"] == "/metrics"
    # The job label: deploy/prometheus's rules look for job="tuya-events".
    assert service["metadata"]["labels"][monitor["spec"]["jobLabel"]] == "tuya-events"
    assert pod["metadata"]["labels"][pod_monitor["spec"]["jobLabel"]] == "tuya-events"
    assert 'job="tuya-events"' in (ROOT / "deploy/prometheus/tuya-events-alerts.yaml").read_text()
    for doc in (monitor, pod_monitor):
        assert doc["metadata"]["name"] == service["metadata"]["name"]
        assert set(doc["spec"]) <= {
            "jobLabel",
            "selector",
            "namespaceSelector",
            "endpoints",
            "podMetricsEndpoints",
        }


def test_monitors_are_off_by_default(tmp_path: Path) -> None:
    assert not {doc["kind"] for doc in render(tmp_path)} & CRD_KINDS


# -- the configuration the pods run with -------------------------------------------------------


def load_as_the_pod_does(docs: list[dict[str, Any]], tmp_path: Path):  # type: ignore[no-untyped-def]
    """The ConfigMap's config.yaml, with the Secret's files where the pod would mount them."""
    mounted = tmp_path / "secrets"
    mounted.mkdir()
    for name, value in by_kind(docs)["Secret"]["data"].items():
        (mounted / name).write_bytes(base64.b64decode(value))
    tree = rendered_config(docs)
    tree["tuya"]["access_secret_file"] = tree["tuya"]["access_secret_file"].replace(
        SECRETS_DIR, str(mounted)
    )
    return settings_from_mapping(tree, {}, source="ConfigMap")


def test_rendered_configuration_validates_with_the_daemon_s_loader(tmp_path: Path) -> None:
    docs = render(tmp_path, CONFIGURED)
    settings = load_as_the_pod_does(docs, tmp_path)
    assert settings.tuya.access_secret.get_secret_value() == ACCESS_SECRET
    assert settings.tuya.access_id == "access0id0000000"
    assert settings.http.enabled and settings.http.listen == ("0.0.0.0", 9464)
    assert settings.dead_letter.path == "/var/lib/tuya-events/dead-letters.sqlite3"
    assert state_directory(settings) == Path(STATE_DIR)
    assert catalogue_path(settings) == Path(STATE_DIR) / "catalogue.sqlite3"
    assert (tmp_path / "secrets" / "webhook_secret").read_text() == "whsec_x"


def test_default_values_render_a_configuration_the_loader_refuses_with_reasons(
    tmp_path: Path,
) -> None:
    """No access id, no secret: the pod would exit 78 naming both keys (NOTES.txt warns)."""
    from tuya_events.config import ConfigError

    with pytest.raises(ConfigError) as caught:
        load_as_the_pod_does(render(tmp_path), tmp_path)
    rendered = caught.value.render()
    assert "tuya.access_id" in rendered and "tuya.access_secret_file" in rendered


def test_chart_owns_listen_secret_file_and_dead_letter_path(tmp_path: Path) -> None:
    values = copy.deepcopy(CONFIGURED)
    values["config"]["tuya"]["access_secret"] = "inline-secret-is-dropped-000000"
    values["config"]["http"] = {
        "listen": "127.0.0.1:1",
        "enabled": False,
        "ready_max_silence": "10m",
    }
    values["config"]["dead_letter"] = {"path": "/tmp/x.sqlite3", "store_plaintext": True}
    values["config"]["state"] = {"directory": "/tmp"}
    values["service"] = {"port": 9100}
    docs = render(tmp_path, values)
    config = rendered_config(docs)
    assert "access_secret" not in config["tuya"]
    assert config["tuya"]["access_secret_file"] == f"{SECRETS_DIR}/access_secret"
    assert config["http"] == {"enabled": True, "listen": "0.0.0.0:9100", "ready_max_silence": "10m"}
    assert config["dead_letter"] == {
        "path": "/var/lib/tuya-events/dead-letters.sqlite3",
        "store_plaintext": True,
    }
    assert config["state"] == {"directory": STATE_DIR}
    (port,) = container(docs)["ports"]
    assert port["containerPort"] == 9100
    assert by_kind(docs)["Service"]["spec"]["ports"][0]["port"] == 9100
    assert load_as_the_pod_does(docs, tmp_path).http.listen == ("0.0.0.0", 9100)


def test_existing_secret_is_mounted_and_its_key_is_the_secret_file(tmp_path: Path) -> None:
    docs = render(tmp_path, ALL_ON)
    assert "Secret" not in {doc["kind"] for doc in docs}
    pod = workload(docs)["spec"]["template"]["spec"]
    (secret_volume,) = [v for v in pod["volumes"] if "secret" in v]
    assert secret_volume["secret"]["secretName"] == "tuya-credentials"
    mount = next(m for m in container(docs)["volumeMounts"] if m["name"] == secret_volume["name"])
    assert mount["mountPath"] == SECRETS_DIR and mount["readOnly"] is True
    config = rendered_config(docs)
    assert config["tuya"]["access_secret_file"] == f"{SECRETS_DIR}/client_secret"
    # Readable by the pod's group: the daemon is not root.
    assert secret_volume["secret"]["defaultMode"] & 0o040
    assert pod["securityContext"]["fsGroup"] == pod["securityContext"]["runAsGroup"]


def test_config_and_secret_mounts_are_where_the_command_reads(tmp_path: Path) -> None:
    docs = render(tmp_path, CONFIGURED)
    main = container(docs)
    config_path = main["args"][main["args"].index("-c") + 1]
    assert main["args"][0] == "run"
    mounts = {m["name"]: m["mountPath"] for m in main["volumeMounts"]}
    assert str(Path(config_path).parent) == mounts["config"]
    assert Path(config_path).name in by_kind(docs)["ConfigMap"]["data"]
    secret_file = rendered_config(docs)["tuya"]["access_secret_file"]
    assert str(Path(secret_file).parent) == mounts["secrets"]
    assert Path(secret_file).name in by_kind(docs)["Secret"]["data"]
    assert str(Path(rendered_config(docs)["dead_letter"]["path"]).parent) == mounts["state"]
    settings = load_as_the_pod_does(docs, tmp_path)
    assert str(catalogue_path(settings).parent) == mounts["state"]


@pytest.mark.parametrize("persistent", [False, True])
def test_the_device_catalogue_is_on_the_state_volume(tmp_path: Path, persistent: bool) -> None:
    """The catalogue file next to the dead letters, on the volume the pod mounts writable (an
    emptyDir, or the pod's claim): the root file system is read-only."""
    values = copy.deepcopy(CONFIGURED)
    values["persistence"] = {"enabled": persistent}
    docs = render(tmp_path, values)
    settings = load_as_the_pod_does(docs, tmp_path)
    path = catalogue_path(settings)
    (mount,) = [m for m in container(docs)["volumeMounts"] if path.is_relative_to(m["mountPath"])]
    assert mount["name"] == "state" and not mount.get("readOnly")
    assert path == Path(mount["mountPath"]) / "catalogue.sqlite3"
    assert Path(settings.dead_letter.path).parent == path.parent
    spec = workload(docs)["spec"]
    if persistent:
        assert [claim["metadata"]["name"] for claim in spec["volumeClaimTemplates"]] == ["state"]
    else:
        (volume,) = [v for v in spec["template"]["spec"]["volumes"] if v["name"] == "state"]
        assert "emptyDir" in volume
    assert container(docs)["securityContext"]["readOnlyRootFilesystem"] is True


def test_a_catalogue_path_on_the_state_volume_is_kept(tmp_path: Path) -> None:
    values = copy.deepcopy(CONFIGURED)
    values["config"]["catalogue"] = {"path": f"{STATE_DIR}/devices/catalogue.sqlite3"}
    values["config"]["state"] = {"directory": "/elsewhere"}
    settings = load_as_the_pod_does(render(tmp_path, values), tmp_path)
    assert catalogue_path(settings) == Path(STATE_DIR) / "devices" / "catalogue.sqlite3"
    assert state_directory(settings) == Path(STATE_DIR)


@pytest.mark.parametrize(
    "path", ["/tmp/catalogue.sqlite3", "catalogue.sqlite3", f"{STATE_DIR}/../catalogue.sqlite3"]
)
def test_a_catalogue_path_off_the_state_volume_is_refused_naming_the_key(
    tmp_path: Path, path: str
) -> None:
    values = values_file(tmp_path, {"config": {"catalogue": {"path": path}}})
    result = helm("template", "r", str(CHART), *values, check=False)
    assert result.returncode != 0
    assert "config.catalogue.path" in result.stderr and "state volume" in result.stderr


# -- the pods ----------------------------------------------------------------------------------


def test_two_replicas_probes_and_resources_by_default(tmp_path: Path) -> None:
    docs = render(tmp_path)
    deployment = workload(docs)
    assert deployment["kind"] == "Deployment" and deployment["spec"]["replicas"] == 2
    main = container(docs)
    assert main["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http-metrics"}
    assert main["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http-metrics"}
    assert main["startupProbe"]["httpGet"]["path"] == "/healthz"
    assert main["resources"]["requests"] and main["resources"]["limits"]["memory"]
    assert by_kind(docs)["PodDisruptionBudget"]["spec"]["maxUnavailable"] == 1
    assert render(tmp_path, {"replicaCount": 11})[-1]["spec"]["replicas"] == 11


def test_security_context_is_restrictive(tmp_path: Path) -> None:
    docs = render(tmp_path)
    pod = workload(docs)["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    context = container(docs)["securityContext"]
    assert context["allowPrivilegeEscalation"] is False
    assert context["readOnlyRootFilesystem"] is True
    assert context["capabilities"] == {"drop": ["ALL"]}
    assert context["seccompProfile"] == {"type": "RuntimeDefault"}
    # The uid the image creates (deploy/container/Dockerfile: USER).
    dockerfile = (ROOT / "deploy" / "container" / "Dockerfile").read_text()
    assert f"USER {pod['securityContext']['runAsUser']}:" in dockerfile


def test_dead_letters_on_an_empty_dir_by_default_and_a_claim_per_pod_when_persistent(
    tmp_path: Path,
) -> None:
    pod = workload(render(tmp_path))["spec"]["template"]["spec"]
    (state,) = [v for v in pod["volumes"] if v["name"] == "state"]
    assert "emptyDir" in state

    statefulset = workload(render(tmp_path, ALL_ON))
    assert statefulset["kind"] == "StatefulSet"
    assert not [
        v for v in statefulset["spec"]["template"]["spec"]["volumes"] if v["name"] == "state"
    ]
    (claim,) = statefulset["spec"]["volumeClaimTemplates"]
    assert claim["metadata"]["name"] == "state"
    assert claim["spec"]["storageClassName"] == "fast"
    assert claim["spec"]["resources"]["requests"]["storage"] == "1Gi"
    assert (
        statefulset["spec"]["serviceName"]
        == by_kind(render(tmp_path, ALL_ON))["Service"]["metadata"]["name"]
    )


@pytest.mark.parametrize(
    ("shutdown_timeout", "grace"),
    [(None, 45), ("30s", 45), ("2m", 135), ("500ms", 16), (90, 105), ("1.5m", 105)],
)
def test_grace_period_outlasts_the_shutdown_timeout(
    tmp_path: Path, shutdown_timeout: str | int | None, grace: int
) -> None:
    values: dict[str, Any] = {"config": {"consumer": {}}}
    if shutdown_timeout is not None:
        values["config"]["consumer"]["shutdown_timeout"] = shutdown_timeout
    docs = render(tmp_path, values)
    seconds = workload(docs)["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert seconds == grace
    # The daemon reads the same value: the grace period is longer than its drain.
    config = rendered_config(docs)
    config["tuya"] = {"access_id": "x", "access_secret": ACCESS_SECRET, "region": "eu"}
    assert seconds > settings_from_mapping(config, {}).consumer.shutdown_timeout


def test_grace_period_refuses_a_value_shorter_than_the_drain_and_an_unknown_duration(
    tmp_path: Path,
) -> None:
    short = values_file(tmp_path, {"terminationGracePeriodSeconds": 20})
    result = helm("template", "r", str(CHART), *short, check=False)
    assert result.returncode != 0 and "must be longer than" in result.stderr
    longer = workload(render(tmp_path, {"terminationGracePeriodSeconds": 60}))
    assert longer["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 60
    unknown = values_file(tmp_path, {"config": {"consumer": {"shutdown_timeout": "soon"}}})
    result = helm("template", "r", str(CHART), *unknown, check=False)
    assert result.returncode != 0 and "shutdown_timeout" in result.stderr


def annotations(docs: list[dict[str, Any]]) -> dict[str, str]:
    return workload(docs)["spec"]["template"]["metadata"]["annotations"]


def test_config_checksum_rolls_the_pods_when_the_configuration_changes(tmp_path: Path) -> None:
    base = annotations(render(tmp_path, CONFIGURED))
    changed = copy.deepcopy(CONFIGURED)
    changed["config"]["tuya"]["region"] = "us"
    assert annotations(render(tmp_path, changed))["checksum/config"] != base["checksum/config"]
    scaled = {**copy.deepcopy(CONFIGURED), "replicaCount": 5}
    assert annotations(render(tmp_path, scaled)) == base, "scaling must not roll the pods"
    rotated = copy.deepcopy(CONFIGURED)
    rotated["secret"]["accessSecret"] = "b" * 32
    after = annotations(render(tmp_path, rotated))
    assert after["checksum/secret"] != base["checksum/secret"]
    assert after["checksum/config"] == base["checksum/config"]


def test_notes_warn_about_missing_credentials_and_the_empty_dir(tmp_path: Path) -> None:
    """helm template does not render NOTES.txt; a copy of it as a template does."""
    chart = tmp_path / "tuya-events"
    subprocess.run(["cp", "-r", str(CHART), str(chart)], check=True)
    notes = (chart / "templates" / "NOTES.txt").read_text()
    (chart / "templates" / "notes.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: notes\ndata:\n  notes: |\n"
        + "".join(f"    {line}\n" for line in notes.splitlines())
    )

    def rendered_notes(values: dict[str, Any] | None) -> str:
        output = helm("template", "r", str(chart), *values_file(tmp_path, values)).stdout
        (doc,) = [d for d in yaml.safe_load_all(output) if d and d["metadata"]["name"] == "notes"]
        return doc["data"]["notes"]

    default = rendered_notes(None)
    assert "config.tuya.access_id is empty" in default
    assert "no Access Secret" in default
    assert "lost" in default and "persistence.enabled=true" in default
    assert "device catalogue" in default
    assert "11 partitions" in default
    configured = rendered_notes({**CONFIGURED, "persistence": {"enabled": True}})
    assert "WARNING" not in configured and "emptyDir" not in configured
    assert "StatefulSet" in configured


# -- the NetworkPolicy -------------------------------------------------------------------------


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """A Kubernetes LabelSelector: every matchLabels pair and matchExpression holds."""
    if any(labels.get(key) != value for key, value in selector.get("matchLabels", {}).items()):
        return False
    for expression in selector.get("matchExpressions", []):
        key, values = expression["key"], expression.get("values", [])
        holds = {
            "In": key in labels and labels[key] in values,
            "NotIn": key not in labels or labels[key] not in values,
            "Exists": key in labels,
            "DoesNotExist": key not in labels,
        }[expression["operator"]]
        if not holds:
            return False
    return True


def admits(policy: dict[str, Any], namespace: str, pod: dict[str, str], port: str) -> bool:
    """Whether ``policy`` (in the release's namespace, "default") lets a pod with labels ``pod``
    in ``namespace`` reach ``port``, by NetworkPolicy's rules for pod and namespace peers."""
    namespace_labels = {"kubernetes.io/metadata.name": namespace}  # set by Kubernetes itself
    for rule in policy["spec"].get("ingress", []):
        if rule.get("ports") and port not in {p["port"] for p in rule["ports"]}:
            continue
        if not rule.get("from"):
            return True  # no peers: everyone
        for peer in rule["from"]:
            if "namespaceSelector" not in peer and "podSelector" not in peer:
                continue  # an ipBlock: not about pods
            in_namespace = (
                selects(peer["namespaceSelector"], namespace_labels)
                if "namespaceSelector" in peer
                else namespace == "default"
            )
            if in_namespace and selects(peer.get("podSelector", {}), pod):
                return True
    return False


def test_network_policy_is_off_by_default(tmp_path: Path) -> None:
    """Who scrapes is particular to each cluster: a guessed policy would silently stop it."""
    assert "NetworkPolicy" not in {doc["kind"] for doc in render(tmp_path)}
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["networkPolicy"] == {"enabled": False, "metricsFrom": []}


@pytest.mark.parametrize(
    ("namespace", "pod", "port", "admitted"),
    [
        ("monitoring", {"app.kubernetes.io/name": "prometheus"}, "http-metrics", True),
        ("monitoring", {"app.kubernetes.io/name": "grafana"}, "http-metrics", False),
        ("default", {"app.kubernetes.io/name": "prometheus"}, "http-metrics", False),
        ("tenant", {"app.kubernetes.io/name": "prometheus", "x": "y"}, "http-metrics", False),
        ("monitoring", {"app.kubernetes.io/name": "prometheus"}, "other", False),
        ("default", {"app.kubernetes.io/name": "tuya-events"}, "http-metrics", False),
    ],
)
def test_network_policy_lets_only_the_named_peers_reach_the_metrics_port(
    tmp_path: Path, namespace: str, pod: dict[str, str], port: str, admitted: bool
) -> None:
    docs = render(tmp_path, ALL_ON)
    policy = by_kind(docs)["NetworkPolicy"]
    assert admits(policy, namespace, pod, port) is admitted


def test_network_policy_selects_the_chart_s_pods_and_their_real_port(tmp_path: Path) -> None:
    docs = render(tmp_path, ALL_ON)
    policy = by_kind(docs)["NetworkPolicy"]
    for version in KUBE_VERSIONS:
        kubernetes_validate.validate(policy, version, strict=True)
    pod_labels = workload(docs)["spec"]["template"]["metadata"]["labels"]
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= pod_labels.items()
    assert policy["spec"]["policyTypes"] == ["Ingress"]  # egress is left alone
    (rule,) = policy["spec"]["ingress"]
    (port,) = rule["ports"]
    assert port["port"] in {p["name"] for p in container(docs)["ports"]}
    assert rule["from"] == [PROMETHEUS_PEER]
    # A different service.port moves the container port; the policy names it, so it follows.
    moved = render(tmp_path, {**ALL_ON, "service": {"port": 9100}})
    assert by_kind(moved)["NetworkPolicy"]["spec"]["ingress"] == policy["spec"]["ingress"]


def test_network_policy_passes_any_kind_of_peer_through(tmp_path: Path) -> None:
    peers = [
        {"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16"]}},
        {
            "namespaceSelector": {
                "matchExpressions": [
                    {"key": "team", "operator": "In", "values": ["observability", "sre"]}
                ]
            }
        },
        {"podSelector": {"matchLabels": {"app": "vmagent"}}},
    ]
    values = {"networkPolicy": {"enabled": True, "metricsFrom": peers}}
    (policy,) = [doc for doc in render(tmp_path, values) if doc["kind"] == "NetworkPolicy"]
    for version in KUBE_VERSIONS:
        kubernetes_validate.validate(policy, version, strict=True)
    assert policy["spec"]["ingress"][0]["from"] == peers
    assert admits(policy, "default", {"app": "vmagent"}, "http-metrics")
    assert not admits(policy, "elsewhere", {"app": "vmagent"}, "http-metrics")


@pytest.mark.parametrize(
    ("metrics_from", "message"),
    [
        ([], "networkPolicy.enabled needs networkPolicy.metricsFrom"),
        (None, "networkPolicy.metricsFrom must be a list"),
        ({"podSelector": {}}, "networkPolicy.metricsFrom must be a list"),
        ("prometheus", "networkPolicy.metricsFrom must be a list"),
    ],
)
def test_network_policy_without_a_list_of_peers_is_refused_naming_the_key(
    tmp_path: Path, metrics_from: Any, message: str
) -> None:
    """Rendering ``from: []`` would let every pod in; no rendering at all is the safe answer."""
    values = values_file(
        tmp_path, {"networkPolicy": {"enabled": True, "metricsFrom": metrics_from}}
    )
    result = helm("template", "r", str(CHART), *values, check=False)
    assert result.returncode != 0 and message in result.stderr, result.stderr
