"""The install paths users take, end to end: the image built from the Dockerfile in this run, put
in place with kustomize or with Helm, and the seed scenarios passing through the installed webhook.

Each test has a control plane of its own with a Service network (``ServiceNetwork``): the API
server calls the webhook's Service exactly as installed (its ClusterIP and port, the certificate
checked for ``admission-host.admission-host.svc``), and the test routes that address to the
replica it runs from the image (``ImagePod``: the installed
Deployment's container as the kubelet would run it, as uid 10001 on a read-only root filesystem,
with in-cluster credentials). Nothing in the installed objects is changed for the test.
"""

from __future__ import annotations

import json

import pytest
import yaml

from framework import ApiError, KubeClient
from tests.e2e import cluster
from tests.e2e import test_policies as policies
from tests.e2e import test_seed_examples as seed
from tests.e2e.conftest import Cluster
from tests.e2e.helm import CHART, helm
from tests.e2e.host import DEPLOY, kubectl, wait_for
from tests.e2e.image import ULIMITS, ImagePod, images, podman

pytestmark = [
    pytest.mark.skipif(cluster.selected_release() is not cluster.CURRENT,
                       reason="the install paths are exercised on the current release"),
]

NS = "admission-host"
WEBHOOK = "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/admission-host"


@pytest.fixture(scope="module")
def built():
    return images()


@pytest.fixture
def cp(tmp_path):
    plane = cluster.ControlPlane(tmp_path / "control-plane", service_network=True)
    plane.start()
    yield plane
    plane.stop()


@pytest.fixture
def admin(cp) -> KubeClient:
    return KubeClient.from_kubeconfig(str(cp.admin_kubeconfig))


class Replicas:
    """The installed Deployment's replicas, run from an image; the Service routed to the newest."""

    def __init__(self, cp, admin: KubeClient, image: str, workdir):
        self.cp, self.admin, self.image, self.workdir = cp, admin, image, workdir
        self.running: list = []
        self.revision = None  # the Deployment's rollout the running replicas belong to

    def rollout(self, namespace: str = NS, name: str = "admission-host") -> tuple:
        """(the Deployment, its revision) once its controller has seen its latest change."""
        path = f"/apis/apps/v1/namespaces/{namespace}/deployments/{name}"

        def observed():
            d = self.admin.get(path)
            seen = (d.get("status") or {}).get("observedGeneration", 0) >= d["metadata"]["generation"]
            revision = d["metadata"].get("annotations", {}).get("deployment.kubernetes.io/revision")
            return (d, revision) if seen and revision else None
        return wait_for(observed, 30, what=f"the Deployment controller's rollout of {namespace}/{name}")

    def start(self, namespace: str = NS, name: str = "admission-host") -> ImagePod:
        deployment, self.revision = self.rollout(namespace, name)
        pod = ImagePod(self.admin, self.cp.apiserver_port, self.cp.certs.ca_pem, deployment, self.image,
                       self.workdir).start(wait=False)
        self.running.append(pod)
        pod.wait_ready(60)
        self.cp.services.route(self.admin.get(f"/api/v1/namespaces/{namespace}/services/{name}"), pod.port)
        return pod

    def stop_all(self) -> None:
        for pod in self.running:
            assert pod.stop() == 0, pod.log_tail()
        self.running.clear()

    def follow(self, namespace: str = NS, name: str = "admission-host") -> ImagePod:
        """What the kubelets do after an upgrade: the replicas are replaced when, and only when, the
        Deployment controller rolled out a new pod template; the old ones drain and exit 0."""
        _, revision = self.rollout(namespace, name)
        assert revision != self.revision, f"nothing rolled out: the replicas keep running (revision {revision})"
        self.stop_all()
        return self.start(namespace, name)


@pytest.fixture
def replicas(cp, admin, built, tmp_path):
    r = Replicas(cp, admin, built[0], tmp_path)
    yield r
    for pod in r.running:
        pod.stop(timeout=5)


def core_v1(cp):
    import kubernetes.client

    return kubernetes.client.CoreV1Api(cp.api_client())


def run_seed_scenarios(cp, admin, pod: ImagePod) -> None:
    """The seed README's examples applied as written, and the policies they declare, through the
    installed webhook: each scenario on fresh nodes, namespace and Selectors."""
    scenarios = [lambda k8s, n=name: seed.test_seed_example_applies_and_is_valid(k8s, n)
                 for name in sorted(p.name for p in seed.EXAMPLES.glob("*.yaml"))]
    scenarios += [seed.test_unquoted_pod_deletion_cost_lands_as_a_string,
                  policies.test_fair_tolerates_and_effect_follows_the_node,
                  policies.test_virtual_node_only_lands_on_virtual_node_keeping_own_node_selector,
                  policies.test_normal_node_prefer_bursts_only_when_normal_nodes_are_full]
    for scenario in scenarios:
        k8s = Cluster(cp, admin, core_v1(cp), pod)
        try:
            scenario(k8s)
        finally:
            k8s.cleanup()
        wait_for(lambda: k8s.selector_count() == 0, 20, what="Selector cache empty")


def assert_runs_locked_down(pod: ImagePod) -> None:
    """As the Deployment asks: uid/gid 10001, nothing writable but its volumes."""
    assert pod.exec("id", "-u").stdout.strip() == "10001"
    assert pod.exec("id", "-g").stdout.strip() == "10001"
    denied = pod.exec("touch", "/opt/admission-host/x")
    assert denied.returncode != 0 and "Read-only file system" in denied.stderr, denied
    assert pod.exec("touch", "/tmp/x").returncode == 0  # the tmp emptyDir
    inspected = json.loads(podman("inspect", pod.name).stdout)[0]["HostConfig"]
    assert inspected["ReadonlyRootfs"] is True
    status = dict(line.split(":\t", 1) for line in pod.exec("cat", "/proc/1/status").stdout.splitlines()
                  if ":\t" in line)
    assert int(status["CapBnd"], 16) == 0, status["CapBnd"]  # every capability dropped
    assert status["NoNewPrivs"].strip() == "1"


def api_server_calls_the_service(admin: KubeClient, cp) -> None:
    """The webhook configuration still names the Service; the API server got there (and only there)."""
    (hook,) = admin.get(WEBHOOK)["webhooks"]
    assert hook["clientConfig"]["service"] == {"name": "admission-host", "namespace": NS, "path": "/mutate",
                                               "port": 443}
    assert not cp.services.refused, cp.services.refused


def test_kustomize_install_with_the_image(cp, admin, replicas, built):
    kubectl(cp, "apply", "-k", str(DEPLOY))
    wait_for(lambda: admin.get("/apis/eci.aliyun.com/v1/selectors") is not None, what="selectors served")
    pod = replicas.start()
    assert_runs_locked_down(pod)
    # Its certificate made at start-up, for the Service's names, and the caBundle set.
    (hook,) = admin.get(WEBHOOK)["webhooks"]
    assert hook["clientConfig"].get("caBundle")
    run_seed_scenarios(cp, admin, pod)
    api_server_calls_the_service(admin, cp)
    # SIGTERM drains and exits 0, as a rolling update would stop it.
    replicas.stop_all()


def test_derived_image_lists_its_third_party_plugin(built):
    _, derived = built
    proc = podman("run", "--rm", "--network", "none", "--read-only", *ULIMITS, derived, "plugins")
    listed = {p["name"] for p in json.loads(proc.stdout)["plugins"]}
    assert {"eci_profile", "env_injector"} <= listed, listed
    # Its user is the base image's.
    assert podman("image", "inspect", "--format", "{{.Config.User}}", derived).stdout.strip() == "10001:10001"


def test_helm_install_upgrade_uninstall(cp, admin, replicas, built):
    repository, tag = built[0].rsplit(":", 1)
    kubeconfig = ("--kubeconfig", str(cp.admin_kubeconfig))
    image = ("--set", f"image.repository={repository}", "--set", f"image.tag={tag}")
    helm("install", "admission-host", str(CHART), "-n", NS, "--create-namespace", *kubeconfig, *image)
    deployment = admin.get(f"/apis/apps/v1/namespaces/{NS}/deployments/admission-host")
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == built[0]
    # The chart's crds/ went in first; the replica runs as the chart made it.
    wait_for(lambda: admin.get("/apis/eci.aliyun.com/v1/selectors") is not None, what="selectors served")
    pod = replicas.start()
    assert_runs_locked_down(pod)
    run_seed_scenarios(cp, admin, pod)
    ca_bundle = admin.get(WEBHOOK)["webhooks"][0]["clientConfig"]["caBundle"]

    # An upgrade that changes the webhook and the host's configuration. The caBundle the host set
    # is not the chart's: Helm must leave it, or every call fails until the host sets it again.
    helm("upgrade", "admission-host", str(CHART), "-n", NS, *kubeconfig, "--reuse-values",
         "--set", "webhook.timeoutSeconds=8", "--set", "config.plugins.eci_profile.virtualNodeLabels.pool=burst")
    (hook,) = admin.get(WEBHOOK)["webhooks"]
    assert hook["timeoutSeconds"] == 8 and hook["clientConfig"]["caBundle"] == ca_bundle
    config_map = admin.get(f"/api/v1/namespaces/{NS}/configmaps/admission-host-config")
    config = yaml.safe_load(config_map["data"]["config.yaml"])
    assert config["plugins"]["eci_profile"]["virtualNodeLabels"]["pool"] == "burst"
    # The new configuration rolled the pods: the new replica reads it.
    pod = replicas.follow()
    k8s = Cluster(cp, admin, core_v1(cp), pod)
    try:
        k8s.apply_selector(seed.EXAMPLES / "virtual-node-only.yaml")
        created = k8s.pod("web", k8s.namespace(), labels={"app": "nginx"})
        assert created["spec"]["nodeSelector"] == {"k8s.aliyun.com/vnode": "true", "pool": "burst"}
    finally:
        k8s.cleanup()
    # The seed scenarios' virtual nodes do not carry the new label: back to the chart's defaults.
    helm("upgrade", "admission-host", str(CHART), "-n", NS, *kubeconfig, "--reset-values", *image)
    pod = replicas.follow()
    run_seed_scenarios(cp, admin, pod)
    api_server_calls_the_service(admin, cp)

    helm("uninstall", "admission-host", "-n", NS, *kubeconfig)
    replicas.stop_all()
    # No webhook configuration is left to call a host that is gone: pods are created untouched.
    with pytest.raises(ApiError) as gone:
        admin.get(WEBHOOK)
    assert gone.value.status == 404
    admin.post("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "after"}})
    created = admin.post("/api/v1/namespaces/after/pods", {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web", "labels": {"app": "nginx"}},
        "spec": {"containers": [{"name": "main", "image": "nginx"}]}})
    assert created["metadata"]["name"] == "web"
    left = {o["kind"] for o in yaml.safe_load(kubectl(cp, "get", "all,cm,sa,role,rolebinding,pdb", "-n", NS,
                                                           "-o", "yaml").stdout)["items"]
            if o["metadata"].get("labels", {}).get("app.kubernetes.io/managed-by") == "Helm"}
    assert not left, left
    # Helm never deletes CRDs: the Selectors stay for a reinstall.
    assert admin.get("/apis/apiextensions.k8s.io/v1/customresourcedefinitions/selectors.eci.aliyun.com")
