"""Reaching the API server: the pod's own credentials, read without the kubernetes package."""

import os
import subprocess
import sys

import pytest

from framework import CredentialsError, KubeClient
from framework.kube.client import InClusterConfiguration, load_configuration


@pytest.fixture
def service_account(tmp_path):
    (tmp_path / "token").write_text("first-token\n")
    (tmp_path / "ca.crt").write_text("-----BEGIN CERTIFICATE-----\n")
    return tmp_path


def test_in_cluster_credentials_are_the_pods_own(service_account):
    cfg = InClusterConfiguration(str(service_account), {"KUBERNETES_SERVICE_HOST": "10.96.0.1",
                                                       "KUBERNETES_SERVICE_PORT": "443"})
    assert cfg.host == "https://10.96.0.1:443" and cfg.ssl_ca_cert == str(service_account / "ca.crt")
    # The client takes it as it takes a kubeconfig's configuration.
    assert KubeClient(cfg)._headers(None)["Authorization"] == "Bearer first-token"
    v6 = InClusterConfiguration(str(service_account), {"KUBERNETES_SERVICE_HOST": "fd00::1",
                                                      "KUBERNETES_SERVICE_PORT": "443"})
    assert v6.host == "https://[fd00::1]:443"


def test_a_rotated_token_is_read_again(service_account):
    cfg = InClusterConfiguration(str(service_account), {"KUBERNETES_SERVICE_HOST": "h", "KUBERNETES_SERVICE_PORT": "1"})
    cfg.RECHECK = 0.0
    (service_account / "token").write_text("second-token")
    os.utime(service_account / "token", ns=(1, 1))  # a different mtime, as the kubelet's rewrite gives
    assert cfg.auth_settings()["BearerToken"]["value"] == "Bearer second-token"
    (service_account / "token").unlink()  # unreadable for a moment: the token we had is kept
    assert cfg.token() == "second-token"


@pytest.mark.parametrize("environ, missing", [({}, "KUBERNETES_SERVICE_HOST"),
                                               ({"KUBERNETES_SERVICE_HOST": "h", "KUBERNETES_SERVICE_PORT": "1"},
                                                "token is missing")])
def test_outside_a_cluster_it_says_why(tmp_path, environ, missing):
    with pytest.raises(CredentialsError, match=missing):
        InClusterConfiguration(str(tmp_path), environ)


def test_a_missing_kubeconfig_is_a_credentials_error(tmp_path, monkeypatch):
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(CredentialsError):
        load_configuration(str(tmp_path / "nope"))


def test_serving_imports_no_kubernetes_package():
    """Its import is 18 MB in every process; only kubeconfig files need it."""
    code = ("import sys, framework.cli, framework.host, framework.web.serve, framework.web.workers, "
            "plugins.eci_profile.plugin; print('kubernetes' in sys.modules)")
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=repo).stdout
    assert out.strip() == "False"
