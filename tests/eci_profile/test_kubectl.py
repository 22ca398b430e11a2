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
