"""docs/operations.md's procedures, run command by command as written on a control plane of their
own: install, check, upgrade, start over with a new CA, switch to cert-manager, move to Helm,
uninstall.

The commands come from the documents and run with bash, ``KUBECONFIG`` naming the test cluster.
What no kubelet does here is done by the test: KWOK's simulated nodes run the Deployment's pods
(so ``rollout status`` has replicas to wait for), and ``admission-host serve`` is run as the
Deployment's container runs it (``DeployedHost``) where a procedure needs the host itself (its
certificate Secret, the caBundle), stopped and started again where a rollout would replace it.
"""

from __future__ import annotations

import datetime
import os
import re
import shutil
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.x509.oid import NameOID

from framework import ApiError, KubeClient
from framework.certs import Bundle
from tests.documented import doc_blocks, documented, run
from tests.e2e import cluster
from tests.e2e.helm import helm_path
from tests.e2e.host import DEPLOY, wait_for
from tests.e2e.test_deploy import SA, SECRET, WEBHOOK, DeployedHost, ca_bundle, render

# deploy/ is for 1.21 and later; the simulated nodes that run its pods exist from the current release.
current_release_only = pytest.mark.skipif(cluster.selected_release() is not cluster.CURRENT,
                                          reason="the install procedures are run on the current release")

OPS = "docs/operations.md"
NS = "admission-host"
CRD = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/selectors.eci.aliyun.com"
SELECTORS = "/apis/eci.aliyun.com/v1/selectors"
DEPLOYMENT = f"/apis/apps/v1/namespaces/{NS}/deployments/admission-host"
ROLLOUT = "kubectl -n admission-host rollout status deployment/admission-host"
CA_CHECK = ("kubectl get mutatingwebhookconfiguration admission-host -o jsonpath='{.webhooks[0].clientConfig.caBundle}'"
            " | base64 -d | openssl x509 -noout -subject -enddate")


class Shell:
    """Documented commands, run in a directory holding ``deploy/`` as a user's checkout does."""

    def __init__(self, cp, workdir: Path):
        self.cp, self.workdir = cp, workdir
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "deploy").symlink_to(DEPLOY)

    def __call__(self, command: str, *docs: str, check: bool = True):
        documented(command, *docs)
        tools = [os.path.dirname(self.cp.kubectl)]
        if command.startswith("helm "):
            tools.append(os.path.dirname(helm_path()))
        return run(command, cwd=self.workdir, env={"KUBECONFIG": str(self.cp.admin_kubeconfig)}, path=tuple(tools),
                   timeout=240, check=check)


@pytest.fixture
def plane(tmp_path):
    plane = cluster.ControlPlane(tmp_path / "control-plane")
    plane.start()
    yield plane
    plane.stop()


@pytest.fixture
def kube(plane) -> KubeClient:
    return KubeClient.from_kubeconfig(str(plane.admin_kubeconfig))


@pytest.fixture
def sh(plane, tmp_path) -> Shell:
    return Shell(plane, tmp_path / "checkout")


@pytest.fixture
def nodes(plane):
    """Two simulated nodes: the two replicas, spread over nodes, have somewhere to run."""
    import kubernetes.client

    core = kubernetes.client.CoreV1Api(plane.api_client())
    for name in ("node-a", "node-b"):
        cluster.create_node(core, name)


@pytest.fixture
def hosts(plane, kube, tmp_path):
    """``start()``: one replica of the installed Deployment, as its container runs, until ready."""
    started = []

    def start() -> DeployedHost:
        token = kube.post(f"/api/v1/namespaces/{NS}/serviceaccounts/admission-host/token",
                          {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                           "spec": {"expirationSeconds": 3600}})["status"]["token"]
        kubeconfig = plane.write_kubeconfig(tmp_path / f"sa-{len(started)}.kubeconfig", token=token, user=SA)
        host = DeployedHost(render(DEPLOY), tmp_path / f"host-{len(started)}", kubeconfig).start()
        started.append(host)
        host.wait_ready(60)
        return host

    yield start
    for host in started:
        host.stop()


def gone(admin: KubeClient, path: str) -> bool:
    try:
        admin.get(path)
    except ApiError as exc:
        return exc.status == 404
    return False


def selector_names(admin: KubeClient) -> set:
    return {s["metadata"]["name"] for s in admin.get(SELECTORS).get("items") or ()}


def served_ca(sh: Shell) -> tuple:
    """(CN, notAfter) of the caBundle's CA, read with operations.md's own openssl pipeline."""
    out = sh(CA_CHECK, OPS).stdout
    subject = re.search(r"^subject=\s*CN\s*=\s*(\S+)\s*$", out, re.M).group(1)
    not_after = re.search(r"^notAfter=(.+)$", out, re.M).group(1)
    return subject, datetime.datetime.strptime(" ".join(not_after.split()), "%b %d %H:%M:%S %Y %Z")


def first_ca(admin: KubeClient) -> x509.Certificate:
    return x509.load_pem_x509_certificates(Bundle.from_secret(admin.get(SECRET)).ca_pem)[0]


def cn(cert: x509.Certificate) -> str:
    return cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value


# -- kustomize -------------------------------------------------------------------------------------------
@current_release_only
def test_kustomize_install_check_upgrade_new_ca(kube, sh, nodes, hosts):
    # Install (the all-in-one file), then "Check".
    out = sh("kubectl apply -f deploy/admission-host.yaml", "README.md", OPS).stdout
    assert len([line for line in out.splitlines() if line.endswith(" created")]) == len(render(DEPLOY)), out
    assert "successfully rolled out" in sh(ROLLOUT, OPS).stdout
    host = hosts()
    out = sh("kubectl -n admission-host get secret admission-host-tls", OPS).stdout
    assert re.search(r"^admission-host-tls\s+kubernetes\.io/tls\s+4\s", out, re.M), out
    ca = first_ca(kube)
    subject, not_after = served_ca(sh)
    assert (subject, not_after) == (cn(ca), ca.not_valid_after_utc.replace(tzinfo=None))
    sh("kubectl apply -f deploy/examples/fair.yaml", OPS)
    assert "test-fair" in selector_names(kube)

    # "Upgrade" with kustomize: the same objects (kubectl may call a no-op patch "configured"), no
    # new rollout, the caBundle and the Secret left alone.
    bundle, secret_version = ca_bundle(kube), kube.get(SECRET)["metadata"]["resourceVersion"]
    generation = kube.get(DEPLOYMENT)["metadata"]["generation"]
    sh("kubectl apply -k deploy/crds", OPS)
    out = sh("kubectl apply -k deploy/", "README.md", OPS).stdout
    assert all(line.endswith((" unchanged", " configured")) for line in out.splitlines()), out
    assert len(out.splitlines()) == len(render(DEPLOY)), out
    assert kube.get(DEPLOYMENT)["metadata"]["generation"] == generation
    assert ca_bundle(kube) == bundle and kube.get(SECRET)["metadata"]["resourceVersion"] == secret_version
    sh(ROLLOUT, OPS)

    # "To start over with a new CA": delete the Secret, restart the replicas; they make a new one.
    sh("kubectl -n admission-host delete secret admission-host-tls", OPS)
    sh("kubectl -n admission-host rollout restart deployment/admission-host", OPS)
    template = kube.get(DEPLOYMENT)["spec"]["template"]
    assert "kubectl.kubernetes.io/restartedAt" in template["metadata"]["annotations"]
    assert "successfully rolled out" in sh(ROLLOUT, OPS).stdout
    host.stop()  # the replica replaced by the rollout
    host = hosts()
    new_ca = first_ca(kube)
    assert cn(new_ca) != cn(ca) and ca_bundle(kube) == Bundle.from_secret(kube.get(SECRET)).ca_pem
    assert served_ca(sh)[0] == cn(new_ca)
    host.stop()


@current_release_only
def test_uninstall(kube, sh, hosts):
    sh("kubectl apply -k deploy/", "README.md", OPS)
    hosts().stop()  # its Secret made, as a running install has it
    sh("kubectl apply -f deploy/examples/fair.yaml", OPS)
    sh("kubectl delete mutatingwebhookconfiguration admission-host", OPS)
    assert gone(kube, WEBHOOK)
    # --ignore-not-found: the webhook configuration it holds is gone already.
    sh("kubectl delete -k deploy/ --ignore-not-found", OPS)
    wait_for(lambda: gone(kube, f"/api/v1/namespaces/{NS}"), 90, what="namespace deleted")
    assert gone(kube, CRD) and gone(kube, SECRET)  # every Selector with the CRD, the Secret with the namespace
    assert gone(kube, "/apis/rbac.authorization.k8s.io/v1/clusterroles/admission-host")


@current_release_only
def test_uninstall_keeping_the_crd_and_selectors(kube, sh):
    sh("kubectl apply -k deploy/", OPS)
    sh("kubectl apply -f deploy/examples/fair.yaml", OPS)
    sh("kubectl delete mutatingwebhookconfiguration admission-host", OPS)
    sh("kubectl delete -k deploy/base --ignore-not-found", OPS)
    wait_for(lambda: gone(kube, f"/api/v1/namespaces/{NS}"), 90, what="namespace deleted")
    assert selector_names(kube) == {"test-fair"} and not gone(kube, CRD)
    assert gone(kube, "/apis/rbac.authorization.k8s.io/v1/clusterroles/admission-host")


# cert-manager's API, without cert-manager: the overlay's objects are accepted and stored, nothing
# issues certificates. The procedure under test is kubectl's part of the switch.
CERT_MANAGER_CRDS = [
    {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
     "metadata": {"name": f"{plural}.cert-manager.io"},
     "spec": {"group": "cert-manager.io", "scope": "Namespaced",
              "names": {"plural": plural, "singular": kind.lower(), "kind": kind},
              "versions": [{"name": "v1", "served": True, "storage": True, "schema": {"openAPIV3Schema": {
                  "type": "object", "x-kubernetes-preserve-unknown-fields": True}}}]}}
    for plural, kind in (("issuers", "Issuer"), ("certificates", "Certificate"))]


def install_cert_manager_api(kube: KubeClient) -> None:
    for crd in CERT_MANAGER_CRDS:
        kube.post("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd)
        path = f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{crd['metadata']['name']}"
        wait_for(lambda: any(c["type"] == "Established" and c["status"] == "True"
                             for c in kube.get(path).get("status", {}).get("conditions") or ()),
                 what=f"{crd['metadata']['name']} established")


@current_release_only
def test_switching_to_the_cert_manager_overlay(kube, sh, hosts):
    sh("kubectl apply -k deploy/", OPS)
    hosts().stop()  # its Secret made, as a running install has it
    assert not gone(kube, SECRET)
    install_cert_manager_api(kube)
    sh("kubectl apply -k deploy/overlays/cert-manager", OPS)  # "a plain `kubectl apply -k` of the other variant"
    for command in ("kubectl delete role,rolebinding -n admission-host admission-host-certificates",
                    "kubectl delete clusterrole,clusterrolebinding admission-host-certificates",
                    "kubectl -n admission-host delete secret admission-host-tls"):
        sh(command, OPS)

    # What is left is exactly the overlay's install: nothing of the other variant remains.
    def names(kustomization: str, missing_ok: bool) -> set:
        flag = " --ignore-not-found" if missing_ok else ""
        return set(run(f"kubectl get -k {kustomization} -o name{flag}", cwd=sh.workdir,
                       env={"KUBECONFIG": str(sh.cp.admin_kubeconfig)},
                       path=(os.path.dirname(sh.cp.kubectl),)).stdout.split())

    overlay = names("deploy/overlays/cert-manager", False)
    assert names("deploy/", True) | overlay == overlay
    assert gone(kube, SECRET)
    hook = kube.get(WEBHOOK)
    assert hook["metadata"]["annotations"]["cert-manager.io/inject-ca-from"] == f"{NS}/admission-host-serving"
    args = kube.get(DEPLOYMENT)["spec"]["template"]["spec"]["containers"][0]["args"]
    assert not [a for a in args if a.startswith("--cert-")], args


# -- Helm ---------------------------------------------------------------------------------------------------
@current_release_only
def test_from_kustomize_to_helm_and_back_out(kube, sh, nodes, hosts):
    sh("kubectl apply -k deploy/", OPS)
    sh("kubectl apply -f deploy/examples/fair.yaml", OPS)
    hosts().stop()
    secret_version = kube.get(SECRET)["metadata"]["resourceVersion"]

    # "From the kustomize install to Helm".
    for command in ("kubectl delete mutatingwebhookconfiguration admission-host",
                    "kubectl delete clusterrole,clusterrolebinding -l app.kubernetes.io/name=admission-host",
                    "kubectl -n admission-host delete deployment,service,poddisruptionbudget,configmap,"
                    "serviceaccount,role,rolebinding -l app.kubernetes.io/name=admission-host",
                    "helm install admission-host deploy/helm/admission-host -n admission-host"):
        sh(command, OPS)
    deployment = kube.get(DEPLOYMENT)
    assert deployment["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "Helm"
    assert kube.get(WEBHOOK)["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "Helm"
    # The Selectors and the host's Secret stayed.
    assert selector_names(kube) == {"test-fair"}
    assert kube.get(SECRET)["metadata"]["resourceVersion"] == secret_version
    assert "successfully rolled out" in sh(ROLLOUT, OPS).stdout

    # "Upgrading" with the derived image's values.
    values = next(b for b in doc_blocks(OPS, "yaml") if b.startswith("# my-values.yaml"))
    (sh.workdir / "my-values.yaml").write_text(values)
    sh("kubectl apply -k deploy/crds", OPS)
    checksum = kube.get(DEPLOYMENT)["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
    sh("helm upgrade admission-host deploy/helm/admission-host -n admission-host -f my-values.yaml", OPS)
    template = kube.get(DEPLOYMENT)["spec"]["template"]
    assert template["metadata"]["annotations"]["checksum/config"] != checksum  # the new config rolls the pods
    container = template["spec"]["containers"][0]
    assert container["image"] == "registry.example.com/admission-host-plugins:0.1.0-owner-label.1"
    config_map = kube.get(f"/api/v1/namespaces/{NS}/configmaps/admission-host-config")
    config = yaml.safe_load(config_map["data"]["config.yaml"])
    assert config["enabledPlugins"] == ["eci_profile", "owner_label"]  # lists replaced whole
    assert config["plugins"]["owner_label"] == {"label": "example.com/owner"}
    assert config["plugins"]["eci_profile"]["virtualNodeLabels"]  # maps merged: the defaults stay
    assert "successfully rolled out" in sh(ROLLOUT, OPS).stdout

    # "Switching mode is a `helm upgrade`: Helm removes the objects the new mode has not"; the
    # host's Secret is the user's to delete.
    documented("helm upgrade", OPS)
    install_cert_manager_api(kube)
    run("helm upgrade admission-host deploy/helm/admission-host -n admission-host --reuse-values "
        "--set certificates.mode=cert-manager", cwd=sh.workdir, env={"KUBECONFIG": str(sh.cp.admin_kubeconfig)},
        path=(os.path.dirname(helm_path()),))
    for path in (f"/apis/rbac.authorization.k8s.io/v1/namespaces/{NS}/roles/admission-host-certificates",
                 f"/apis/rbac.authorization.k8s.io/v1/namespaces/{NS}/rolebindings/admission-host-certificates",
                 "/apis/rbac.authorization.k8s.io/v1/clusterroles/admission-host-certificates",
                 "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/admission-host-certificates"):
        assert gone(kube, path), path
    issuers = {i["metadata"]["name"] for i in kube.get(f"/apis/cert-manager.io/v1/namespaces/{NS}/issuers")["items"]}
    assert issuers == {"admission-host-selfsigned", "admission-host-ca"}
    assert kube.get(WEBHOOK)["metadata"]["annotations"]["cert-manager.io/inject-ca-from"] == \
        f"{NS}/admission-host-serving"
    assert kube.get(SECRET)["metadata"]["resourceVersion"] == secret_version

    # "Uninstalling": the CRD, its Selectors, the namespace and the host's Secret survive.
    sh("helm uninstall admission-host -n admission-host", OPS)
    assert gone(kube, WEBHOOK) and gone(kube, DEPLOYMENT)
    assert selector_names(kube) == {"test-fair"}
    assert kube.get(SECRET)["metadata"]["resourceVersion"] == secret_version
    sh("kubectl delete crd selectors.eci.aliyun.com", OPS)
    assert gone(kube, CRD)
    sh("kubectl delete namespace admission-host", OPS)
    assert gone(kube, f"/api/v1/namespaces/{NS}") and gone(kube, SECRET)


# -- a live cluster ---------------------------------------------------------------------------------------------
def test_explain_and_get_selectors_live(k8s):
    """The explain commands with every installed plugin (no --plugins), and ``kubectl get selectors``."""
    assert shutil.which("admission-host"), "the admission-host command is not installed (pip install -e .)"
    ns = k8s.namespace()
    name = f"{k8s.id}-live"
    k8s.apply_selector({"apiVersion": "eci.aliyun.com/v1", "kind": "Selector", "metadata": {"name": name},
                        "spec": {"objectLabels": {"matchLabels": {"app": k8s.id}}, "priority": 7,
                                 "policy": {"fair": {}}}})
    k8s.pod("web", ns, labels={"app": k8s.id})
    env = {"KUBECONFIG": str(k8s.cp.admin_kubeconfig)}
    kubeconfig = {"~/.kube/config": str(k8s.cp.admin_kubeconfig)}
    for command, target in (("admission-host explain default/web --kubeconfig ~/.kube/config", "default/web"),
                            ("admission-host explain NAMESPACE/POD --kubeconfig ~/.kube/config", "NAMESPACE/POD")):
        out = run(documented(command), cwd=k8s.cp.workdir, env=env,
                  replace={target: f"{ns}/web", **kubeconfig}).stdout
        assert f"winner: {name} (fair), highest priority (7)" in out, out
        assert "no change" in out, out  # mutated at creation: a second pass adds nothing
    tools = (os.path.dirname(k8s.cp.kubectl),)
    out = run(documented("kubectl get selectors"), cwd=k8s.cp.workdir, env=env, path=tools).stdout
    rows = {line.split()[0]: line.split() for line in out.splitlines()[1:]}
    assert out.split("\n")[0].split() == ["NAME", "PRIORITY", "POLICY", "VIRTUAL", "TIERS", "WAITING", "VALID", "AGE"], out
    assert rows[name][1:3] == ["7", "fair"] and rows[name][-2] == "True", out  # VALID, before AGE
