"""kubectl eci's pieces that need no cluster (the e2e suite runs the plugin through kubectl)."""

from plugins.eci_profile.kubectl import default_namespace, describe_labels


def test_label_selectors_print_as_kubectl_prints_them():
    assert describe_labels(None) == "*" and describe_labels({}) == "*"
    assert describe_labels({"matchLabels": {"b": "2", "a": "1"}, "matchExpressions": [
        {"key": "tier", "operator": "In", "values": ["x", "y"]}, {"key": "t", "operator": "NotIn", "values": ["z"]},
        {"key": "gpu", "operator": "Exists"}, {"key": "canary", "operator": "DoesNotExist"}]}) == \
        "a=1,b=2,tier in (x,y),t notin (z),gpu,!canary"


def test_the_namespace_comes_from_the_kubeconfig_context(tmp_path):
    config = tmp_path / "kubeconfig"
    config.write_text("""
apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: u, user: {token: t}}]
contexts:
- {name: shop, context: {cluster: c, user: u, namespace: shop}}
- {name: plain, context: {cluster: c, user: u}}
current-context: shop
""")
    assert default_namespace(str(config), None) == "shop"
    assert default_namespace(str(config), "plain") == "default"
    assert default_namespace(str(tmp_path / "missing"), None) == "default"


def test_kubectls_flags_may_come_before_or_after_the_subcommand():
    from plugins.eci_profile.kubectl import _parser

    for argv in (["-n", "shop", "explain", "web"], ["explain", "web", "-n", "shop"],
                 ["explain", "--namespace", "shop", "web"]):
        args = _parser().parse_args(argv)
        assert (args.command, args.pod, args.namespace, args.host_config) == \
            ("explain", "web", "shop", "admission-host/admission-host")
    assert _parser().parse_args(["selectors", "--context", "c"]).context == "c"


def test_the_options_come_from_the_configmap_named_or_the_one_the_deployment_mounts():
    from plugins.eci_profile.kubectl import eci_options

    from .conftest import RecordingKube

    config = {"data": {"config.yaml": "plugins:\n  eci_profile:\n    virtualNodeLabels: {type: vk}\n"}}
    deployment = {"spec": {"template": {"spec": {"volumes": [
        {"name": "certs", "secret": {"secretName": "x"}}, {"name": "config", "configMap": {"name": "host-config-5b2k"}}]}}}}
    kube = RecordingKube({"/apis/apps/v1/namespaces/admission-host/deployments/admission-host": deployment,
                          "/api/v1/namespaces/admission-host/configmaps/host-config-5b2k": config,
                          "/api/v1/namespaces/ops/configmaps/mine": config})
    assert eci_options(kube, "admission-host/admission-host") == {"virtualNodeLabels": {"type": "vk"}}
    assert eci_options(kube, "ops/mine") == {"virtualNodeLabels": {"type": "vk"}}
    assert eci_options(kube, "ops/none") == {}


def test_selectors_reads_the_pods_a_page_at_a_time(capsys):
    from framework import list_pages
    from plugins.eci_profile.kubectl import cmd_selectors

    class Paging:
        def __init__(self):
            self.pod_queries = []

        def get(self, path, **query):
            if path == "/api/v1/pods":
                self.pod_queries.append(dict(query))
                start = int(query.get("continue") or 0)
                pods = [{"metadata": {"name": f"p{i}", "namespace": "default", "labels": {"app": "web"}},
                         "status": {"phase": "Running"}} for i in range(start, min(start + query["limit"], 5))]
                return {"items": pods, "metadata": {"continue": str(start + len(pods)) if start + len(pods) < 5
                                                    else ""}}
            if path == "/apis/eci.aliyun.com/v1/selectors":
                return {"items": [{"metadata": {"name": "web"}, "spec": {
                    "objectLabels": {"matchLabels": {"app": "web"}}, "policy": {"fair": {}}}}]}
            return {"items": []}

    kube = Paging()
    assert [p["metadata"]["name"] for p in list_pages(kube, "/api/v1/pods", limit=2)] == [f"p{i}" for i in range(5)]
    assert [q.get("continue") for q in kube.pod_queries] == [None, "2", "4"]
    assert cmd_selectors(kube, {}) == 0
    row = capsys.readouterr().out.splitlines()[1].split()
    assert row[0] == "web" and row[3] == "5"  # every page counted


def test_selectors_asks_for_the_metadata_of_unfinished_pods_only():
    from framework import METADATA_ONLY
    from plugins.eci_profile.kubectl import UNFINISHED, cmd_selectors

    class Recording:
        def __init__(self):
            self.pod_queries = []

        def get(self, path, **query):
            if path == "/api/v1/pods":
                self.pod_queries.append(dict(query))
            return {"items": []}

    kube = Recording()
    assert cmd_selectors(kube, {}) == 0
    assert [(q.get("accept"), q.get("fieldSelector")) for q in kube.pod_queries] == [(METADATA_ONLY, UNFINISHED)]


class _Profile:
    """Resolves by the app label, counting its calls."""

    def __init__(self, custom=False):
        self.custom_match, self.custom_resolve, self.calls = False, custom, 0

    def resolve(self, pod, namespace):
        from types import SimpleNamespace

        self.calls += 1
        app = pod["metadata"]["labels"].get("app")
        return SimpleNamespace(selector=SimpleNamespace(name=f"{namespace}-{app}") if app != "none" else None)


def _pods():
    def pod(i, namespace, app, **extra):
        return {"metadata": {"name": f"p{i}", "namespace": namespace, "labels": {"app": app}}, **extra}

    return ([pod(i, "shop", "web") for i in range(1000)] + [pod(i, "shop", "db") for i in range(10)]
            + [pod(i, "ops", "web") for i in range(5)] + [pod(i, "shop", "none") for i in range(3)]
            + [pod(1, "shop", "web", status={"phase": "Succeeded"}), pod(2, "shop", "alone")])


def test_the_pods_of_one_workload_are_resolved_once():
    from plugins.eci_profile.kubectl import count_wins

    def left_alone(pod):
        return "a static pod" if pod["metadata"]["labels"]["app"] == "alone" else None

    profile = _Profile()
    wins = count_wins(profile, iter(_pods()), left_alone)
    assert wins == {"shop-web": 1000, "shop-db": 10, "ops-web": 5}  # finished and left-alone pods not counted
    assert profile.calls == 4  # one per namespace and labels
    custom = _Profile(custom=True)  # a plugin's eci_resolve may look at more than the labels: every pod
    assert count_wins(custom, iter(_pods()), left_alone) == wins and custom.calls == 1018
