"""deploy/helm/admission-host: the chart renders the kustomize install, and its values do what they say.

Offline: ``helm lint`` and ``helm template`` only, compared with ``kubectl kustomize`` of deploy/
and its overlays. The default rendering is the kustomize install minus the Namespace (Helm's
``--create-namespace`` makes it), objects told apart by (kind, namespace, name), once Helm's four
bookkeeping labels are removed; the config file in the ConfigMap is compared parsed. How a config
change rolls the pods differs, and is set aside: kustomize names the ConfigMap after a hash of the
file, the chart puts its checksum on the pods.
"""

from __future__ import annotations

import copy
import difflib
import hashlib
import re
from typing import Dict, Iterator, List, Tuple

import pytest
import yaml

from framework.certs import CA_FILE, service_names
from framework.cli import build_parser
from framework.config import load_file
from tests.e2e.helm import CHART, NAMESPACE, RELEASE, helm, template
from tests.e2e.test_deploy import (DEPLOY, OVERLAY_1_20, container, expand, find, flags, kubelet_env, render,
                                   selector_matches)

CERT_MANAGER = DEPLOY / "overlays" / "cert-manager"
CHART_META = yaml.safe_load((CHART / "Chart.yaml").read_text())
HELM_LABELS = {"helm.sh/chart", "app.kubernetes.io/instance", "app.kubernetes.io/managed-by",
               "app.kubernetes.io/version"}
CLUSTER_SCOPED = {"CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding", "MutatingWebhookConfiguration"}
WEBHOOK_NAME = "admission-host.eci.aliyun.com"
CERT_MANAGER_MODE = ("--set", "certificates.mode=cert-manager")

Key = Tuple[str, str, str]


# -- helpers ---------------------------------------------------------------------------------------------
def key(o: dict) -> Key:
    return o["kind"], o["metadata"].get("namespace", ""), o["metadata"]["name"]


def without_helm_labels(o: dict, release: str = RELEASE) -> dict:
    """``o`` without the four labels Helm's charts add, which must all be there with their values."""
    o = copy.deepcopy(o)
    labels = o["metadata"].get("labels") or {}
    if o["kind"] != "CustomResourceDefinition":  # crds/ is installed as written
        assert {k: labels.get(k) for k in HELM_LABELS} == {
            "helm.sh/chart": f"{CHART_META['name']}-{CHART_META['version']}", "app.kubernetes.io/instance": release,
            "app.kubernetes.io/managed-by": "Helm", "app.kubernetes.io/version": CHART_META["appVersion"]}, key(o)
    for label in HELM_LABELS:
        labels.pop(label, None)
    return o


def comparable(o: dict) -> dict:
    """The config file parsed (the chart writes it with toYaml); volumes and mounts in name order
    (the kustomize overlay's strategic merge puts the patched one first; order means nothing there)."""
    o = copy.deepcopy(o)
    if o["kind"] == "ConfigMap" and "config.yaml" in o.get("data", {}):
        o["data"]["config.yaml"] = yaml.safe_load(o["data"]["config.yaml"])
    if o["kind"] == "Deployment":
        spec = o["spec"]["template"]["spec"]
        spec["volumes"] = sorted(spec["volumes"], key=lambda v: v["name"])
        for c in spec["containers"]:
            c["volumeMounts"] = sorted(c["volumeMounts"], key=lambda m: m["mountPath"])
    return o


CHECKSUM = "checksum/config"
HASHED = re.compile(r"^(.+-config)-[a-z0-9]{10}$")  # kustomize's name suffix


def unrolled(o: dict) -> dict:
    """``o`` without what rolls the pods on a config change: the ConfigMap's hash suffix
    (kustomize), the pods' checksum of the config file (the chart)."""
    o = copy.deepcopy(o)
    if o["kind"] == "ConfigMap":
        o["metadata"]["name"] = HASHED.sub(r"\1", o["metadata"]["name"])
    if o["kind"] == "Deployment":
        meta = o["spec"]["template"]["metadata"]
        (meta.get("annotations") or {}).pop(CHECKSUM, None)
        if meta.get("annotations") == {}:
            del meta["annotations"]
        for volume in o["spec"]["template"]["spec"]["volumes"]:
            if "configMap" in volume:
                volume["configMap"]["name"] = HASHED.sub(r"\1", volume["configMap"]["name"])
    return o


def differences(chart: List[dict], kustomize: List[dict]) -> List[str]:
    """What differs between the chart's objects and the kustomize install's (minus its Namespace),
    one readable entry per object."""
    def by_key(objects: List[dict]) -> Dict[Key, dict]:
        keyed = {key(o): comparable(o) for o in map(unrolled, objects)}
        assert len(keyed) == len(objects), f"two objects with one (kind, namespace, name): {[key(o) for o in objects]}"
        return keyed

    got = by_key([without_helm_labels(o) for o in chart])
    want = by_key([o for o in kustomize if o["kind"] != "Namespace"])
    problems = [f"only in the chart: {k}" for k in sorted(set(got) - set(want))]
    problems += [f"only in kustomize: {k}" for k in sorted(set(want) - set(got))]
    for k in sorted(set(got) & set(want)):
        if got[k] != want[k]:
            diff = difflib.unified_diff(yaml.safe_dump(want[k]).splitlines(), yaml.safe_dump(got[k]).splitlines(),
                                        "kustomize", "chart", lineterm="", n=2)
            problems.append(f"{k} differs:\n" + "\n".join(diff))
    return problems


def deployment(objects: List[dict]) -> dict:
    return find(objects, "Deployment")


def parsed_args(objects: List[dict]):
    """The container's args, expanded as the kubelet does, parsed by the host's own CLI."""
    return build_parser().parse_args(expand(container(objects)["args"], kubelet_env(objects)))


def webhook(objects: List[dict]) -> dict:
    (hook,) = find(objects, "MutatingWebhookConfiguration")["webhooks"]
    return hook


def config_file(objects: List[dict]) -> dict:
    volumes = {v["name"]: v for v in deployment(objects)["spec"]["template"]["spec"]["volumes"]}
    config_map = find(objects, "ConfigMap", volumes["config"]["configMap"]["name"])
    return yaml.safe_load(config_map["data"]["config.yaml"])


def strings(value, path: Tuple = ()) -> Iterator[Tuple[Tuple, str]]:
    """Every string in an object, with the keys and indexes leading to it."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield from strings(v, path + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from strings(v, path + (i,))
    elif isinstance(value, str):
        yield path, value


def check_references(objects: List[dict], namespace: str, fullname: str, mode: str = "self") -> None:
    """Every object lives where it should and every name one object gives another is that object's."""
    for o in objects:
        if o["kind"] in CLUSTER_SCOPED:
            assert "namespace" not in o["metadata"], key(o)
        else:
            assert o["metadata"]["namespace"] == namespace, key(o)
    d = deployment(objects)
    assert d["metadata"]["name"] == fullname
    pod = d["spec"]["template"]
    pod_labels = pod["metadata"]["labels"]
    args = parsed_args(objects)  # every flag exists
    f = flags(container(objects)["args"])
    # Workloads and the selectors that must find them.
    assert selector_matches(d["spec"]["selector"], pod_labels)
    service = find(objects, "Service", fullname)
    assert selector_matches({"matchLabels": service["spec"]["selector"]}, pod_labels)
    for pdb in (o for o in objects if o["kind"] == "PodDisruptionBudget"):
        assert selector_matches(pdb["spec"]["selector"], pod_labels)
    # RBAC: the ServiceAccount the pods run as is every binding's subject; every roleRef exists.
    account = find(objects, "ServiceAccount", pod["spec"]["serviceAccountName"])
    for binding in (o for o in objects if o["kind"] in ("RoleBinding", "ClusterRoleBinding")):
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": account["metadata"]["name"],
                                        "namespace": namespace}], key(binding)
        role_kind = binding["roleRef"]["kind"]
        assert role_kind == {"RoleBinding": "Role", "ClusterRoleBinding": "ClusterRole"}[binding["kind"]]
        find(objects, role_kind, binding["roleRef"]["name"])
    # The leader Lease the config names is the one the Role allows.
    lease = config_file(objects)["leaderElection"]["name"]
    lease_rules = [r for r in find(objects, "Role", fullname)["rules"] if "resourceNames" in r]
    assert lease_rules == [{"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
                            "resourceNames": [lease], "verbs": ["get", "update"]}]
    # The webhook calls the Service, and never the host's own pods.
    hook = webhook(objects)
    assert hook["name"] == WEBHOOK_NAME
    assert hook["clientConfig"]["service"] == {"name": service["metadata"]["name"], "namespace": namespace,
                                               "path": "/mutate", "port": 443}
    assert not selector_matches(hook["objectSelector"], pod_labels)
    assert selector_matches(hook["objectSelector"], {"app": "web"})
    configuration = find(objects, "MutatingWebhookConfiguration")
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    if mode == "self":
        assert f["cert-secret"] == f"{fullname}-tls"
        secret_rules = [r for r in find(objects, "Role", f"{fullname}-certificates")["rules"] if "resourceNames" in r]
        assert secret_rules == [{"apiGroups": [""], "resources": ["secrets"], "resourceNames": [f["cert-secret"]],
                                 "verbs": ["get", "update"]}]
        assert args.service_name == service["metadata"]["name"]
        assert args.webhook_configuration == configuration["metadata"]["name"] == fullname
        (rule,) = find(objects, "ClusterRole", f"{fullname}-certificates")["rules"]
        assert rule["resourceNames"] == [args.webhook_configuration]
        assert "annotations" not in configuration["metadata"]
    else:
        assert not {"cert-secret", "cert-dir", "service-name", "webhook-configuration"} & set(f)
        assert not [o for o in objects if o["metadata"]["name"].endswith("-certificates")]
        mount = next(m for m in container(objects)["volumeMounts"]
                     if args.tls_cert_file.startswith(m["mountPath"] + "/"))
        secret = volumes[mount["name"]]["secret"]["secretName"]
        certificates = {o["metadata"]["name"]: o for o in objects if o["kind"] == "Certificate"}
        issuers = {o["metadata"]["name"]: o for o in objects if o["kind"] == "Issuer"}
        (serving,) = [c for c in certificates.values() if c["spec"]["secretName"] == secret]
        assert set(service_names(service["metadata"]["name"], namespace)) <= set(serving["spec"]["dnsNames"])
        assert configuration["metadata"]["annotations"] == {
            "cert-manager.io/inject-ca-from": f"{namespace}/{serving['metadata']['name']}"}
        for certificate in certificates.values():  # the chain of Issuers resolves
            ref = certificate["spec"]["issuerRef"]
            if ref.get("kind", "Issuer") == "Issuer":
                issuer = issuers[ref["name"]]
                if "ca" in issuer["spec"]:
                    ca_secrets = {c["spec"]["secretName"] for c in certificates.values() if c["spec"].get("isCA")}
                    assert issuer["spec"]["ca"]["secretName"] in ca_secrets


def refused(*args: str) -> str:
    """stderr of a ``helm template`` that must fail."""
    proc = helm("template", RELEASE, str(CHART), "-n", NAMESPACE, *args, check=False)
    assert proc.returncode != 0, f"helm template {' '.join(args)} was accepted"
    return proc.stderr


# -- lint -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("args", [(), CERT_MANAGER_MODE, ("--kube-version", "1.20.0"),
                                  ("--set", "serviceMonitor.enabled=true")],
                         ids=["default", "cert-manager", "1.20", "monitor"])
def test_lint_strict(args):
    proc = helm("lint", "--strict", str(CHART), *args, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "[WARNING]" not in proc.stdout and "[ERROR]" not in proc.stdout, proc.stdout


# -- the same objects as the kustomize install ------------------------------------------------------------
@pytest.mark.parametrize("args,kustomization", [((), DEPLOY), (CERT_MANAGER_MODE, CERT_MANAGER),
                                                (("--kube-version", "1.20.0"), OVERLAY_1_20)],
                         ids=["deploy", "cert-manager", "kubernetes-1.20"])
def test_default_rendering_is_the_kustomize_install(args, kustomization):
    problems = differences(template(*args), render(kustomization))
    assert not problems, "\n\n".join(problems)


def test_chart_crds_are_deploy_crds():
    chart_crds = {p.name: p.read_bytes() for p in (CHART / "crds").iterdir()}
    deploy_crds = {p.name: p.read_bytes() for p in (DEPLOY / "crds").glob("*.yaml") if p.name != "kustomization.yaml"}
    assert chart_crds.keys() == deploy_crds.keys()
    for name in chart_crds:
        assert chart_crds[name] == deploy_crds[name], f"{CHART / 'crds' / name} differs from deploy/crds/{name}"


# -- names ----------------------------------------------------------------------------------------------
# Where "admission-host" stays whatever the release: the pods' app.kubernetes.io/name label (and
# the selectors on it), the chart label, the webhook's name, the container's name, the image, and
# the paths inside the container.
NAME_KEYS = {"app.kubernetes.io/name", "helm.sh/chart", "containerName", "image"}
FIXED = re.compile(r"admission-host\.eci\.aliyun\.com|/(etc|run)/admission-host\b")


def stray_names(objects: List[dict], fullname: str) -> List[str]:
    """Strings that say admission-host other than through the fullname or the places above."""
    stray = []
    for o in objects:
        if o["kind"] == "CustomResourceDefinition":
            continue
        for path, value in strings(o):
            if "admission-host" not in FIXED.sub("", value.replace(fullname, "<fullname>")):
                continue
            if path[-1] in NAME_KEYS or "objectSelector" in path:  # the label, or NotIn [its value]
                continue
            if len(path) >= 3 and path[-3] == "containers" and path[-1] == "name":
                continue
            stray.append(f"{key(o)} {'.'.join(map(str, path))}: {value!r}")
    return stray


@pytest.mark.parametrize("release,namespace,extra,fullname", [
    (RELEASE, NAMESPACE, (), "admission-host"),
    ("ah", "infra", (), "ah-admission-host"),
    ("ah", "infra", ("--set", "fullnameOverride=edge"), "edge"),
    ("my-admission-host", "infra", (), "my-admission-host"),
], ids=["default", "release-ah", "fullnameOverride", "release-contains-name"])
@pytest.mark.parametrize("mode", ["self", "cert-manager"])
def test_every_name_follows_the_release(release, namespace, extra, fullname, mode):
    objects = template(*extra, "--set", f"certificates.mode={mode}", release=release, namespace=namespace)
    check_references(objects, namespace, fullname, mode)
    for o in objects:
        if o["kind"] != "CustomResourceDefinition":
            assert o["metadata"]["name"] == fullname or o["metadata"]["name"].startswith(fullname + "-"), key(o)
    stray = stray_names(objects, fullname)
    assert not stray, "\n".join(stray)
    namespaces = {v for o in objects for p, v in strings(o) if p[-1] == "namespace"}
    assert namespaces == {namespace}


def test_name_override_changes_the_selector_label_everywhere():
    objects = template("--set", "nameOverride=eci", "--set", "affinity=null")
    check_references(objects, NAMESPACE, "admission-host-eci")
    assert deployment(objects)["spec"]["template"]["metadata"]["labels"] == {"app.kubernetes.io/name": "eci"}
    assert webhook(objects)["objectSelector"]["matchExpressions"][0]["values"] == ["eci"]


# -- values --------------------------------------------------------------------------------------------
def test_defaults_render_no_optional_objects_or_fields():
    objects = template()
    assert not [o for o in objects if o["kind"] == "ServiceMonitor"]
    assert "namespaceSelector" not in webhook(objects)
    spec = deployment(objects)["spec"]["template"]["spec"]
    assert not {"imagePullSecrets", "priorityClassName", "nodeSelector", "tolerations"} & set(spec)
    assert set(deployment(objects)["spec"]["template"]["metadata"]["annotations"]) == {CHECKSUM}


def test_exclude_namespaces_gives_a_namespace_selector():
    objects = template("--set", "webhook.excludeNamespaces={kube-system,monitoring}")
    selector = webhook(objects)["namespaceSelector"]
    assert selector == {"matchExpressions": [{"key": "kubernetes.io/metadata.name", "operator": "NotIn",
                                              "values": ["kube-system", "monitoring"]}]}
    assert not selector_matches(selector, {"kubernetes.io/metadata.name": "kube-system"})
    assert selector_matches(selector, {"kubernetes.io/metadata.name": "shop"})


def test_failure_policy_and_timeout_reach_the_webhook():
    hook = webhook(template("--set", "webhook.failurePolicy=Fail", "--set", "webhook.timeoutSeconds=10"))
    assert (hook["failurePolicy"], hook["timeoutSeconds"]) == ("Fail", 10)


def test_match_conditions_only_where_served_and_wanted():
    # The default plugins' (tests/unit/test_webhook.py keeps deploy/ equal to what the host renders).
    assert webhook(template())["matchConditions"] == webhook(render(DEPLOY))["matchConditions"]
    assert "matchConditions" in webhook(template("--kube-version", "1.28.0"))
    assert "matchConditions" not in webhook(template("--kube-version", "1.27.9"))
    off = template("--set", "webhook.matchConditions=false")
    assert "matchConditions" not in webhook(off)
    # Turned off, they stay off: the host does not set them either.
    assert parsed_args(off).no_match_conditions and not parsed_args(template()).no_match_conditions


def checksum(objects: List[dict]) -> str:
    """The checksum the pods should carry: of the config file in the ConfigMap they mount."""
    volumes = {v["name"]: v for v in deployment(objects)["spec"]["template"]["spec"]["volumes"]}
    text = find(objects, "ConfigMap", volumes["config"]["configMap"]["name"])["data"]["config.yaml"]
    return hashlib.sha256(text.rstrip("\n").encode()).hexdigest()


def pods_checksum(*args: str) -> str:
    return deployment(template(*args))["spec"]["template"]["metadata"]["annotations"][CHECKSUM]


def test_a_config_change_rolls_the_pods():
    """The pods read the config file at start-up only: a new one must give them a new template."""
    default = pods_checksum()
    assert default == checksum(template())
    changed = ("--set", "config.plugins.eci_profile.virtualNodeLabels.pool=burst")
    assert pods_checksum(*changed) == checksum(template(*changed)) != default
    assert pods_checksum("--set", "config.enabledPlugins={eci_profile,pod_deletion_cost}") != default
    # What is not the config file leaves the pods alone.
    assert pods_checksum("--set", "replicaCount=3", "--set", "webhook.timeoutSeconds=8") == default


def test_pod_disruption_budget_version_and_switch():
    assert find(template(), "PodDisruptionBudget")["apiVersion"] == "policy/v1"
    assert find(template("--kube-version", "1.21.0"), "PodDisruptionBudget")["apiVersion"] == "policy/v1"
    assert find(template("--kube-version", "1.20.15"), "PodDisruptionBudget")["apiVersion"] == "policy/v1beta1"
    objects = template("--set", "podDisruptionBudget.enabled=false")
    assert not [o for o in objects if o["kind"] == "PodDisruptionBudget"]
    assert len(objects) == len(template()) - 1
    assert find(template("--set", "podDisruptionBudget.minAvailable=50%"), "PodDisruptionBudget")["spec"][
        "minAvailable"] == "50%"


@pytest.mark.parametrize("mode", ["self", "cert-manager"])
def test_service_monitor_scrapes_the_service_over_tls(mode):
    objects = template("--set", "serviceMonitor.enabled=true", "--set", f"certificates.mode={mode}",
                       "--set", "serviceMonitor.labels.release=prometheus", "--set", "serviceMonitor.interval=30s",
                       release="ah", namespace="infra")
    monitor = find(objects, "ServiceMonitor")
    service = find(objects, "Service")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["namespace"] == "infra" and monitor["metadata"]["labels"]["release"] == "prometheus"
    assert selector_matches(monitor["spec"]["selector"], service["metadata"]["labels"])
    assert "app.kubernetes.io/instance" in monitor["spec"]["selector"]["matchLabels"]  # not another release's
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["infra"]}
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] in [p["name"] for p in service["spec"]["ports"]]
    assert (endpoint["path"], endpoint["scheme"], endpoint["interval"]) == ("/metrics", "https", "30s")
    # Verified against the CA the webhook trusts, in the Secret the serving certificate is in,
    # for a name the certificate has (the pods are scraped by IP).
    tls = endpoint["tlsConfig"]
    assert tls["ca"]["secret"]["key"] == CA_FILE
    if mode == "self":
        assert tls["ca"]["secret"]["name"] == flags(container(objects)["args"])["cert-secret"]
    else:
        volume = next(v for v in deployment(objects)["spec"]["template"]["spec"]["volumes"] if v["name"] == "tls")
        assert tls["ca"]["secret"]["name"] == volume["secret"]["secretName"]
    assert tls["serverName"] in service_names(service["metadata"]["name"], "infra")
    assert "insecureSkipVerify" not in tls
    own = template("--set", "serviceMonitor.enabled=true", "--set", "serviceMonitor.tlsConfig.insecureSkipVerify=true")
    assert find(own, "ServiceMonitor")["spec"]["endpoints"][0]["tlsConfig"] == {"insecureSkipVerify": True}


def test_image_repository_and_tag_reach_the_container():
    assert container(template())["image"] == f"admission-host:{CHART_META['appVersion']}"
    c = container(template("--set", "image.repository=registry.example.com/admission-host-plugins",
                           "--set", "image.tag=1.2.3", "--set", "image.pullPolicy=Always"))
    assert (c["image"], c["imagePullPolicy"]) == ("registry.example.com/admission-host-plugins:1.2.3", "Always")


def test_pod_settings_reach_the_pod_but_not_the_selectors():
    objects = template("--set", "podLabels.team=infra", "--set", "podAnnotations.example\\.com/owner=infra",
                       "--set", "nodeSelector.pool=system", "--set", "priorityClassName=system-cluster-critical",
                       "--set", "tolerations[0].key=dedicated", "--set", "tolerations[0].operator=Exists",
                       "--set", "imagePullSecrets[0].name=registry")
    pod = deployment(objects)["spec"]["template"]
    assert pod["metadata"]["labels"] == {"app.kubernetes.io/name": "admission-host", "team": "infra"}
    assert pod["metadata"]["annotations"] == {"example.com/owner": "infra", CHECKSUM: checksum(objects)}
    assert deployment(objects)["spec"]["selector"] == {"matchLabels": {"app.kubernetes.io/name": "admission-host"}}
    assert find(objects, "Service")["spec"]["selector"] == {"app.kubernetes.io/name": "admission-host"}
    spec = pod["spec"]
    assert spec["nodeSelector"] == {"pool": "system"}
    assert spec["priorityClassName"] == "system-cluster-critical"
    assert spec["tolerations"] == [{"key": "dedicated", "operator": "Exists"}]
    assert spec["imagePullSecrets"] == [{"name": "registry"}]
    assert "affinity" not in deployment(template("--set", "affinity=null"))["spec"]["template"]["spec"]
    check_references(objects, NAMESPACE, "admission-host")


def test_workers_log_format_extra_args_and_env():
    objects = template("--set", "workers=auto", "--set", "logFormat=text",
                       "--set", "extraArgs={--log-level=DEBUG,--threads=16}",
                       "--set", "extraEnv[0].name=TZ", "--set", "extraEnv[0].value=UTC")
    c = container(objects)
    args = parsed_args(objects)
    assert (args.workers, args.log_format, args.log_level, args.threads) == \
        (parsed_workers("auto"), "text", "DEBUG", 16)
    assert c["args"][-2:] == ["--log-level=DEBUG", "--threads=16"]
    assert [e["name"] for e in c["env"]] == ["POD_NAMESPACE", "CPU_LIMIT", "TZ"]
    assert parsed_args(template("--set", "workers=3")).workers == 3
    default = template()
    assert flags(container(default)["args"])["workers"] == "$(CPU_LIMIT)" and parsed_args(default).workers == 1


def parsed_workers(value: str) -> int:
    return build_parser().parse_args(["serve", f"--workers={value}"]).workers


def test_resources_and_replicas():
    objects = template("--set", "replicaCount=3", "--set", "resources.limits.cpu=2")
    assert deployment(objects)["spec"]["replicas"] == 3
    assert kubelet_env(objects)["CPU_LIMIT"] == "2" and parsed_args(objects).workers == 2


def test_config_values_reach_the_config_file_and_the_lease_role():
    objects = template("--set", "config.enabledPlugins={eci_profile,owner_label}",
                       "--set", "config.plugins.owner_label.label=example.com/owner",
                       "--set", "config.leaderElection.name=ah-leader")
    config = config_file(objects)
    assert config["enabledPlugins"] == ["eci_profile", "owner_label"]
    assert config["plugins"]["owner_label"] == {"label": "example.com/owner"}
    assert config["plugins"]["eci_profile"]["virtualNodeLabels"] == {"k8s.aliyun.com/vnode": "true"}
    assert config["leaderElection"] == {"name": "ah-leader"}
    check_references(objects, NAMESPACE, "admission-host")  # the Role names ah-leader


def test_default_config_file_loads_as_the_hosts_configuration(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text(find(template(), "ConfigMap")["data"]["config.yaml"])
    config = load_file(str(path))
    assert config.enabled_plugins == ["eci_profile"] and config.lease_name == "admission-host"


def test_cert_manager_with_an_existing_issuer():
    objects = template(*CERT_MANAGER_MODE, "--set", "certificates.certManager.issuerRef.kind=ClusterIssuer",
                       "--set", "certificates.certManager.issuerRef.name=corporate-ca")
    assert not [o for o in objects if o["kind"] == "Issuer"]
    (serving,) = [o for o in objects if o["kind"] == "Certificate"]
    assert serving["spec"]["issuerRef"] == {"kind": "ClusterIssuer", "name": "corporate-ca"}
    check_references(objects, NAMESPACE, "admission-host", "cert-manager")


@pytest.mark.parametrize("args,where,says", [
    (("--set", "replicaCount=two"), "/replicaCount", "integer"),
    (("--set", "certificates.mode=vault"), "/certificates/mode", "cert-manager"),
    (("--set", "webhook.failurePolicy=Never"), "/webhook/failurePolicy", "Ignore"),
    (("--set", "webhook.timeoutSeconds=60"), "/webhook/timeoutSeconds", "30"),
    (("--set", "workers=many"), "/workers", "does not match pattern"),
    (("--set", "logFormat=xml"), "/logFormat", "json"),
    (("--set", "webhook.excludeNamespaces=kube-system"), "/webhook/excludeNamespaces", "array"),
    (("--set", "podLabels.team=1"), "/podLabels/team", "string"),
    (("--set", "certificates.certManager.issuerRef.kind=ClusterIssuer"), "/certificates/certManager/issuerRef", "name"),
    (("--set", "replicas=3"), "", "replicas"),  # a misspelt key
], ids=lambda v: v if isinstance(v, str) else None)
def test_schema_refuses_wrong_values_clearly(args, where, says):
    stderr = refused(*args)
    assert "don't meet the specifications of the schema" in stderr, stderr
    assert f"'{where}'" in stderr and says in stderr, stderr
