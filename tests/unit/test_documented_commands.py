"""Every command README.md and docs/*.md tell a user to run is run by a test.

The commands are read from the documents (tests/documented.py says how). ``COVERED`` names the
test(s) that run each one; ``NOT_RUN`` lists, with the reason, the few no test can run here. A newly
documented command in neither fails the suite, as does an entry whose test no longer exists or
whose command is no longer documented.
"""

from __future__ import annotations

import ast
import functools
import re
from typing import Dict, Tuple, Union

import pytest

from tests.documented import ROOT, block_commands, documented_commands, line_commands

# -- the table ------------------------------------------------------------------------------------------------
# Keys: a command exactly as documented (whitespace collapsed), or a compiled regex matched in full.
Pattern = Union[str, "re.Pattern[str]"]
Tests = Union[str, Tuple[str, ...]]

OFFLINE = "tests/integration/test_documented_offline.py"
PLUGIN_GUIDE = "tests/integration/test_documented_plugin_guide.py"
BENCH = "tests/integration/test_documented_bench.py"
OPERATIONS = "tests/e2e/test_documented_operations.py"
E2E_DEPLOY = "tests/e2e/test_deploy.py"
E2E_INSTALL = "tests/e2e/test_install.py"

COVERED: Dict[Pattern, Tests] = {
    # -- getting started (README) ------------------------------------------------------------------------
    "./hack/demo.sh": "tests/e2e/test_demo.py::test_the_demo_stops_what_it_started",
    re.compile(r"(python3 -m )?pip install -e '\.\[test\]'"): OFFLINE + "::test_pip_install_editable_with_the_test_extra",
    "pip install .": OFFLINE + "::test_pip_install_gives_both_commands",
    # The suite itself is the run; the test checks what each selects.
    "python3 -m pytest": OFFLINE + "::test_pytest_selects_every_suite_and_not_e2e_only_leaves_out_e2e",
    'python3 -m pytest -m "not e2e"': OFFLINE + "::test_pytest_selects_every_suite_and_not_e2e_only_leaves_out_e2e",
    "python -m bench": (BENCH + "::test_bench_headline_and_scaling", BENCH + "::test_bench_micro"),
    "python -m bench.pipeline": BENCH + "::test_bench_pipeline",
    "python -m bench.eci_profile": BENCH + "::test_bench_eci_profile",
    "python -m bench.eci_profile --memory": BENCH + "::test_bench_eci_profile_memory",

    # -- admission-host, offline ---------------------------------------------------------------------------
    "admission-host mutate pod.yaml --objects deploy/examples/virtual-node-only.yaml namespaces.yaml -o object":
        OFFLINE + "::test_readme_mutate_with_a_seed_selector",
    "admission-host explain pod.yaml --objects deploy/examples/*.yaml": OFFLINE + "::test_readme_explain_offline",
    "admission-host explain pod.yaml --objects selectors.yaml namespaces.yaml": OFFLINE + "::test_selectors_explain_offline",
    "admission-host serve --local --objects deploy/examples/*.yaml --insecure-http --port 8080":
        OFFLINE + "::test_serve_local_over_http",
    "curl -sk https://127.0.0.1:8443/plugins": OFFLINE + "::test_curl_plugins_over_https",
    "kubectl patch --type=json": OFFLINE + "::test_patch_output_is_what_kubectl_patch_takes",
    "admission-host mutate": "tests/unit/test_cli.py::test_mutate_output_object_applies_the_patch",
    "admission-host mutate REVIEW_OR_OBJECT --objects FILES... --plugins NAME [-o object|patch] [--dry-run]": (
        "tests/unit/test_cli.py::test_mutate_with_objects_from_multi_document_files",
        "tests/unit/test_cli.py::test_mutate_output_patch_is_one_operation_a_line",
        "tests/unit/test_cli.py::test_mutate_dry_run"),
    "admission-host explain": "tests/eci_profile/test_explain.py::test_explain_command_offline",
    # Piped to the host each document serves with --local (the README's and the guide's).
    "admission-host review pod.yaml | curl -s -H 'Content-Type: application/json' --data-binary @- "
    "http://127.0.0.1:8080/mutate": (OFFLINE + "::test_serve_local_over_http",
                                     PLUGIN_GUIDE + "::test_serve_local_with_the_plugin"),
    "admission-host review": "tests/unit/test_cli.py::test_review_of_a_pod_is_its_creation_as_the_api_server_sends_it",
    "admission-host plugins": "plugins/examples/env_injector/tests/test_install.py::test_the_installed_plugin_is_listed",
    "admission-host plugins --check":
        "tests/unit/test_options.py::test_plugins_check_needs_no_options_so_an_image_build_can_run_it",
    "hack/render-deploy.sh": OFFLINE + "::test_render_deploy_rewrites_the_all_in_one_file",
    "admission-host webhook-config": OFFLINE + "::test_webhook_config_prints_the_configuration_the_plugins_need",
    "admission-host webhook-config --config config.yaml":
        OFFLINE + "::test_webhook_config_prints_the_configuration_the_plugins_need",

    # -- writing a plugin ------------------------------------------------------------------------------------
    # The host from its wheel, with no index reachable (the name on an index is not this project's).
    "pip install /path/to/admission-host/dist/admission_host-0.1.0-py3-none-any.whl pytest":
        PLUGIN_GUIDE + "::test_the_host_and_the_plugin_install_with_no_index_the_host_from_its_wheel",
    "pip install -e .": (PLUGIN_GUIDE + "::test_the_guides_tests_pass_installed",
                         PLUGIN_GUIDE + "::test_the_host_and_the_plugin_install_with_no_index_the_host_from_its_wheel",
                         PLUGIN_GUIDE + "::test_without_the_host_first_the_plugin_does_not_install"),
    "python -m pytest tests": PLUGIN_GUIDE + "::test_the_guides_tests_pass_installed",
    "admission-host plugins --plugins owner_label": PLUGIN_GUIDE + "::test_plugins_prints_what_the_guide_shows",
    # The transcript's files and command: written and run as shown.
    "cat pod.yaml": "tests/unit/test_docs_guide.py::test_the_guides_mutate_example",
    "cat namespaces.yaml": "tests/unit/test_docs_guide.py::test_the_guides_mutate_example",
    "admission-host mutate pod.yaml --objects namespaces.yaml --plugins owner_label -o object":
        "tests/unit/test_docs_guide.py::test_the_guides_mutate_example",
    "admission-host serve --local --objects namespaces.yaml --plugins owner_label --insecure-http --port 8080":
        PLUGIN_GUIDE + "::test_serve_local_with_the_plugin",
    # The host's wheel, in this repository, and the plugin's, in its directory.
    "pip wheel --no-deps -w dist .": (
        PLUGIN_GUIDE + "::test_the_host_and_the_plugin_install_with_no_index_the_host_from_its_wheel",
        PLUGIN_GUIDE + "::test_the_wheel_installs_as_the_dockerfile_does"),
    "pip install --no-cache-dir --no-deps /tmp/admission_host_owner_label-0.1.0-py3-none-any.whl":
        PLUGIN_GUIDE + "::test_the_wheel_installs_as_the_dockerfile_does",
    # The build check of both documents' Dockerfiles (hack/image/derived.Dockerfile runs it for its plugin).
    "admission-host plugins --check --plugins owner_label": (
        PLUGIN_GUIDE + "::test_the_wheel_installs_as_the_dockerfile_does",
        PLUGIN_GUIDE + "::test_the_build_check_passes_for_a_plugin_with_a_required_option",
        E2E_INSTALL + "::test_derived_image_lists_its_third_party_plugin"),

    # -- the image -------------------------------------------------------------------------------------------
    # hack/image/build.sh builds ./Dockerfile with buildah (no daemon here), then a derived image
    # whose RUN line is operations.md's, with the plugin's wheel for the index name.
    "docker build -t registry.example.com/admission-host:0.1.0 .": E2E_INSTALL + "::test_kustomize_install_with_the_image",
    "hack/image/build.sh": E2E_INSTALL + "::test_derived_image_lists_its_third_party_plugin",
    "pip install --no-cache-dir --only-binary=:all: admission-host-owner-label==1.0.0":
        E2E_INSTALL + "::test_derived_image_lists_its_third_party_plugin",
    "pip install /tmp/*.whl": E2E_INSTALL + "::test_derived_image_lists_its_third_party_plugin",

    # -- kustomize install -----------------------------------------------------------------------------------
    "kubectl apply -k deploy/": E2E_INSTALL + "::test_kustomize_install_with_the_image",
    "kubectl apply -f deploy/admission-host.yaml": OPERATIONS + "::test_kustomize_install_check_upgrade_new_ca",
    "kubectl apply -k deploy/overlays/kubernetes-1.20": E2E_DEPLOY + "::test_apply_creates_every_object",  # on 1.20
    "kubectl apply -f deploy/base/namespace.yaml": E2E_DEPLOY + "::test_server_dry_run_accepts_the_install",
    "kubectl apply --dry-run=server -k deploy/": E2E_DEPLOY + "::test_server_dry_run_accepts_the_install",
    "kubectl apply --dry-run=server": E2E_DEPLOY + "::test_server_dry_run_accepts_the_install",
    "kubectl auth can-i --list --as=system:serviceaccount:admission-host:admission-host -n admission-host":
        E2E_DEPLOY + "::test_service_account_may_do_exactly_what_the_host_needs",
    "kubectl auth can-i --list": E2E_DEPLOY + "::test_service_account_may_do_exactly_what_the_host_needs",
    "kubectl -n admission-host rollout status deployment/admission-host":
        OPERATIONS + "::test_kustomize_install_check_upgrade_new_ca",
    "kubectl -n admission-host get secret admission-host-tls": OPERATIONS + "::test_kustomize_install_check_upgrade_new_ca",
    "kubectl get mutatingwebhookconfiguration admission-host -o jsonpath='{.webhooks[0].clientConfig.caBundle}' "
    "| base64 -d | openssl x509 -noout -subject -enddate": OPERATIONS + "::test_kustomize_install_check_upgrade_new_ca",
    "kubectl apply -f deploy/examples/fair.yaml": OPERATIONS + "::test_kustomize_install_check_upgrade_new_ca",
    "kubectl apply -k deploy/crds": OPERATIONS + "::test_kustomize_install_check_upgrade_new_ca",
    "kubectl apply": OPERATIONS + "::test_kustomize_install_check_upgrade_new_ca",  # leaves the caBundle
    "kubectl -n admission-host delete secret admission-host-tls": OPERATIONS + "::test_kustomize_install_check_upgrade_new_ca",
    "kubectl -n admission-host rollout restart deployment/admission-host":
        OPERATIONS + "::test_kustomize_install_check_upgrade_new_ca",
    "kubectl delete mutatingwebhookconfiguration admission-host": OPERATIONS + "::test_uninstall",
    "kubectl delete -k deploy/ --ignore-not-found": OPERATIONS + "::test_uninstall",
    "kubectl delete -k deploy/base --ignore-not-found": OPERATIONS + "::test_uninstall_keeping_the_crd_and_selectors",
    # cert-manager's own controllers do not run here: its CRDs stand in (see the test).
    "kubectl apply -k deploy/overlays/cert-manager": OPERATIONS + "::test_switching_to_the_cert_manager_overlay",
    "kubectl apply -k": OPERATIONS + "::test_switching_to_the_cert_manager_overlay",
    "kubectl delete role,rolebinding -n admission-host admission-host-certificates":
        OPERATIONS + "::test_switching_to_the_cert_manager_overlay",
    "kubectl delete clusterrole,clusterrolebinding admission-host-certificates":
        OPERATIONS + "::test_switching_to_the_cert_manager_overlay",

    # -- Helm -------------------------------------------------------------------------------------------------
    "hack/helm/build.sh": "tests/e2e/test_helm_chart.py::test_lint_strict",
    "helm template": "tests/e2e/test_helm_chart.py::test_default_rendering_is_the_kustomize_install",
    "helm install admission-host deploy/helm/admission-host -n admission-host --create-namespace "
    "--set image.repository=registry.example.com/admission-host --set image.tag=0.1.0":
        E2E_INSTALL + "::test_helm_install_upgrade_uninstall",
    "helm upgrade": OPERATIONS + "::test_from_kustomize_to_helm_and_back_out",  # switching mode
    "helm upgrade admission-host deploy/helm/admission-host -n admission-host -f my-values.yaml":
        OPERATIONS + "::test_from_kustomize_to_helm_and_back_out",
    "kubectl delete clusterrole,clusterrolebinding -l app.kubernetes.io/name=admission-host":
        OPERATIONS + "::test_from_kustomize_to_helm_and_back_out",
    "kubectl -n admission-host delete deployment,service,poddisruptionbudget,configmap,serviceaccount,role,rolebinding "
    "-l app.kubernetes.io/name=admission-host": OPERATIONS + "::test_from_kustomize_to_helm_and_back_out",
    "helm install admission-host deploy/helm/admission-host -n admission-host":
        OPERATIONS + "::test_from_kustomize_to_helm_and_back_out",
    "helm uninstall admission-host -n admission-host": OPERATIONS + "::test_from_kustomize_to_helm_and_back_out",
    "kubectl delete crd selectors.eci.aliyun.com": OPERATIONS + "::test_from_kustomize_to_helm_and_back_out",
    "kubectl delete namespace admission-host": OPERATIONS + "::test_from_kustomize_to_helm_and_back_out",

    # -- against a live cluster ----------------------------------------------------------------------------
    "admission-host serve --port 8443 --tls-cert-file tls.crt --tls-private-key-file tls.key [--kubeconfig FILE] "
    "[--config config.yaml] [--plugins eci_profile]": "tests/e2e/test_operability.py::test_metrics_tell_what_happened",
    # "The Deployment runs `admission-host serve` with" its certificate flags: run as it does.
    "admission-host serve": E2E_DEPLOY + "::test_host_makes_its_certificate_and_the_api_server_calls_it",
    "admission-host explain default/web --kubeconfig ~/.kube/config": OPERATIONS + "::test_explain_and_get_selectors_live",
    "admission-host explain NAMESPACE/POD --kubeconfig ~/.kube/config": OPERATIONS + "::test_explain_and_get_selectors_live",
    "kubectl get selectors": OPERATIONS + "::test_explain_and_get_selectors_live",
    "kubectl eci selectors": "tests/e2e/test_kubectl_eci.py::test_selectors_lists_what_each_selector_matches_and_wins",
    "kubectl eci explain web -n shop": "tests/e2e/test_kubectl_eci.py::test_explain_names_the_winner_of_a_live_pod",
}

NOT_RUN: Dict[Pattern, str] = {
    "docker push registry.example.com/admission-host:0.1.0": "needs a registry to push to",
    "cd deploy/base": "the one-off below edits deploy/base in place",
    "kustomize edit set image admission-host=registry.example.com/admission-host:0.1.0":
        "needs the standalone kustomize binary (kubectl embeds only `kustomize build`)",
    "kubectl -n admission-host logs deployment/admission-host | grep -i certificate":
        "needs a kubelet: the test clusters' pods are simulated (KWOK) and have no logs",
    "kubectl -n admission-host port-forward deployment/admission-host 8443":
        "needs a kubelet to forward to; the curl that follows is run against a served host",
    # docs/threat-model.md names it as what not to run: no index has the host, and the name there is not ours.
    "pip install admission-host": "the mistake the threat model warns against, not an instruction",
}


# -- checks ---------------------------------------------------------------------------------------------------
def _matches(pattern: Pattern, command: str) -> bool:
    return command == pattern if isinstance(pattern, str) else pattern.fullmatch(command) is not None


def _label(pattern: Pattern) -> str:
    return pattern if isinstance(pattern, str) else f"re:{pattern.pattern}"


@functools.lru_cache(maxsize=None)
def _defined(path: str) -> frozenset:
    """``name`` and ``Class::name`` of the test functions defined in a file."""
    tree = ast.parse((ROOT / path).read_text(encoding="utf-8"))
    names = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            names.add(node.name)
        elif isinstance(node, ast.ClassDef):
            names |= {f"{node.name}::{f.name}" for f in node.body
                      if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))}
    return frozenset(names)


def test_the_documents_are_read():
    """The extraction finds commands of every kind, so that the checks below cannot pass empty."""
    commands = documented_commands()
    assert len(commands) > 50, sorted(commands)
    for expected in ("./hack/demo.sh",                                        # a sh block
                     "helm upgrade admission-host deploy/helm/admission-host -n admission-host -f my-values.yaml",
                     "kubectl apply -f deploy/admission-host.yaml",           # an `# or:` comment
                     "python3 -m pytest",                                     # after &&
                     "admission-host plugins --plugins owner_label",          # a $ prompt
                     "pip wheel --no-deps -w dist .",                         # inline
                     "pip install /tmp/*.whl"):                               # inline, after a COPY
        assert expected in commands, expected
    assert not any(c.startswith(("{", '"', "apiVersion", "events ")) for c in commands), "output taken as a command"


def test_every_documented_command_is_run_by_a_test():
    entries = [*COVERED, *NOT_RUN]
    unmatched = {c: where for c, where in documented_commands().items() if not any(_matches(p, c) for p in entries)}
    assert not unmatched, "documented commands no test runs (add a test and a COVERED entry):\n" + "\n".join(
        f"  {c}    ({', '.join(where)})" for c, where in sorted(unmatched.items()))


def test_every_named_test_exists():
    missing = []
    for pattern, targets in COVERED.items():
        for target in (targets,) if isinstance(targets, str) else targets:
            path, _, name = target.partition("::")
            if not (ROOT / path).is_file() or name not in _defined(path):
                missing.append(f"  {_label(pattern)} -> {target}")
    assert not missing, "COVERED names tests that do not exist:\n" + "\n".join(missing)


def test_every_entry_is_still_documented():
    commands = documented_commands()
    stale = [_label(p) for p in [*COVERED, *NOT_RUN] if not any(_matches(p, c) for c in commands)]
    assert not stale, "entries matching no documented command (remove them):\n  " + "\n  ".join(stale)
    assert not set(COVERED) & set(NOT_RUN)


@pytest.mark.parametrize("line, expected", [
    ("kubectl apply -k deploy/       # or: kubectl apply -f x.yaml", ["kubectl apply -k deploy/", "kubectl apply -f x.yaml"]),
    ("kubectl get x -o jsonpath='{.a#b}' | base64 -d  # decode", ["kubectl get x -o jsonpath='{.a#b}' | base64 -d"]),
    ("kubectl port-forward deployment/x 8443 &", ["kubectl port-forward deployment/x 8443"]),
    ("pip install -e . && python -m pytest tests", ["pip install -e .", "python -m pytest tests"]),
    ("# a comment only", []),
])
def test_a_line_becomes_its_commands(line, expected):
    assert line_commands(line) == expected


def test_a_transcript_yields_only_its_prompted_lines():
    block = "$ cat pod.yaml\nkind: Pod\n$ admission-host mutate pod.yaml \\\n    -o object\n{\n}\n"
    assert block_commands("console", block) == ["cat pod.yaml", "admission-host mutate pod.yaml -o object"]
