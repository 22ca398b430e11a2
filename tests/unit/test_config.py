"""The YAML config file."""

import pytest

from framework.config import DEFAULT_MAX_BODY, Config, ConfigError, load_file, load_mapping


def write(tmp_path, text):
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return str(path)


def test_defaults():
    config = Config()
    assert config.enabled_plugins is None
    assert config.port == 8443 and config.max_body_bytes == DEFAULT_MAX_BODY == 7 * 1024 * 1024
    assert config.leader_election is True and config.lease_name == "admission-host"
    assert config.options_for("anything") == {}


def test_no_file_is_the_defaults():
    config = load_file(None)
    assert config == Config(identity=config.identity)


def test_every_file_key(tmp_path):
    config = load_file(write(tmp_path, """
enabledPlugins: [eci_profile, pod_deletion_cost]
plugins:
  eci_profile:
    virtualNodeLabels: {type: virtual-kubelet}
  pod_deletion_cost:
    label: example.com/cost
  bare:
bindAddress: 127.0.0.1
port: 9443
threads: 3
maxBodyBytes: 1000
leaderElection: {enabled: false, namespace: kube-system, name: my-lease}
logLevel: DEBUG
logFormat: json
admissionDeadlineSeconds: 2.5
"""))
    assert config.enabled_plugins == ["eci_profile", "pod_deletion_cost"]
    assert config.plugin_options == {"eci_profile": {"virtualNodeLabels": {"type": "virtual-kubelet"}},
                                     "pod_deletion_cost": {"label": "example.com/cost"}, "bare": {}}
    assert config.options_for("pod_deletion_cost") == {"label": "example.com/cost"}
    assert (config.bind_address, config.port, config.threads, config.max_body_bytes) == ("127.0.0.1", 9443, 3, 1000)
    assert (config.leader_election, config.lease_namespace, config.lease_name) == (False, "kube-system", "my-lease")
    assert (config.log_level, config.log_format) == ("DEBUG", "json")
    assert config.admission_deadline_seconds == 2.5


def test_the_old_per_mutator_timeout_key_sets_the_request_deadline(tmp_path):
    assert load_file(write(tmp_path, "mutatorTimeoutSeconds: 3\n")).admission_deadline_seconds == 3


def test_options_for_is_a_copy(tmp_path):
    config = load_file(write(tmp_path, "plugins: {p: {a: 1}}\n"))
    config.options_for("p")["a"] = 2
    assert config.options_for("p") == {"a": 1}


def test_empty_file_is_the_defaults(tmp_path):
    config = load_file(write(tmp_path, ""))
    assert config.enabled_plugins is None and config.plugin_options == {} and config.leader_election is True


def test_file_overrides_a_given_config(tmp_path):
    base = Config(port=1)
    config = load_file(write(tmp_path, "threads: 2\n"), base)
    assert config is base and (config.port, config.threads) == (1, 2)


@pytest.mark.parametrize("text, message", [
    ("prot: 9443\n", "unknown key(s) prot; known: "),
    ("enabledPlugin: [a]\nextra: 1\n", "unknown key(s) enabledPlugin, extra"),
    ("enabled_plugins: [a]\nPort: 1\n", "unknown key(s) Port (did you mean 'port'?), enabled_plugins (did you mean "
                                       "'enabledPlugins'?); known: "),
    ("- a\n- b\n", "expected a mapping at the top level"),
    ("plugins: [a, b]\n", "'plugins' must map plugin names to option mappings"),
    ("plugins: {a: 1}\n", "'plugins' must map plugin names to option mappings"),
    ("enabledPlugins: eci_profile\n", "'enabledPlugins' must be a list of plugin names"),
    ("enabledPlugins: [1]\n", "'enabledPlugins' must be a list of plugin names"),
    ("leaderElection: true\n", "'leaderElection' must be a mapping"),
    ("port: [1\n", "is not valid YAML"),
    # A string where a number belongs would otherwise fail later, on every request.
    ("maxBodyBytes: 7Mi\n", "'maxBodyBytes' must be an integer, got '7Mi'"),
    ("port: '9443'\n", "'port' must be an integer, got '9443'"),
    ("threads: true\n", "'threads' must be an integer, got True"),
    ("bindAddress: 0\n", "'bindAddress' must be a string, got 0"),
    ("logFormat: yaml\n", "'logFormat' must be text or json, got 'yaml'"),
    ("leaderElection: {enabled: 'no'}\n", "'leaderElection.enabled' must be true or false"),
])
def test_errors_say_what_is_wrong(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_file(path)
    assert message in str(info.value)
    assert path in str(info.value)


def test_a_mapping_as_yaml_gives_it_is_read_as_the_file_is():
    data = {"plugins": {"p": {"a": 1}, "bare": None}, "workers": "2", "leaderElection": {"enabled": False}}
    config = load_mapping(data)
    assert (config.plugin_options, config.workers, config.leader_election) == ({"p": {"a": 1}, "bare": {}}, 2, False)
    assert data["workers"] == "2", "the caller's mapping is left as it was"
    with pytest.raises(ConfigError, match="^config: 'port' must be an integer, got '1'$"):
        load_mapping({"port": "1"})


def test_a_missing_file_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read config file .*nope.yaml: No such file"):
        load_file(str(tmp_path / "nope.yaml"))
