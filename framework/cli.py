"""``admission-host serve | mutate | explain | review | plugins | webhook-config``."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Iterable, List, Optional

import jsonpatch
import orjson
import yaml

from framework import logs
from framework.admission.patch import clone
from framework.admission.review import ReviewError, answer, build, validate
from framework.config import Config, ConfigError, load_file
from framework.plugins import PluginError

log = logging.getLogger("admission_host")


def _plugins_arg(value: str) -> List[str]:
    return [p.strip() for p in value.split(",") if p.strip()]


def _positive_seconds(value: str) -> float:
    seconds = float(value)
    if not seconds > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {value!r}")
    return seconds


def _non_negative_seconds(value: str) -> float:
    seconds = float(value)
    if not seconds >= 0:
        raise argparse.ArgumentTypeError(f"must be a number of seconds, 0 or more, got {value!r}")
    return seconds


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="YAML config file (plugins: {NAME: {...options...}})")
    parser.add_argument("--plugins", type=_plugins_arg,
                        help="comma-separated plugins to enable (default: all installed)")
    parser.add_argument("--log-level", default=None, help="DEBUG, INFO, WARNING, ERROR (default INFO)")
    parser.add_argument("--log-format", choices=("text", "json"), default=None)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="admission-host", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="serve the mutating admission webhook over HTTPS")
    _common(serve)
    serve.add_argument("--bind-address", default=None, help="address to listen on (default 0.0.0.0)")
    serve.add_argument("--port", type=int, default=None, help="port to listen on (default 8443)")
    serve.add_argument("--tls-cert-file", help="PEM certificate (chain); re-read when it changes")
    serve.add_argument("--tls-private-key-file", help="PEM private key; re-read when it changes")
    serve.add_argument("--insecure-http", action="store_true",
                       help="serve plain HTTP (only behind a TLS-terminating proxy)")
    serve.add_argument("--kubeconfig", help="kubeconfig file (default: in-cluster, else the usual discovery)")
    serve.add_argument("--context", help="kubeconfig context")
    serve.add_argument("--threads", type=int, default=None, help="threads per serving process (default 8)")
    serve.add_argument("--workers", type=_workers_arg, default=None, metavar="N|auto",
                       help="serving processes on the one port (default 1; auto: the CPUs the process may use, "
                            "capped by its CPU limit); one Python process uses one core")
    serve.add_argument("--max-body-bytes", type=int, default=None, help="largest accepted body (default 7 MiB)")
    serve.add_argument("--admission-deadline-seconds", "--mutator-timeout-seconds", type=float, default=None,
                       dest="admission_deadline_seconds",
                       help="answer each admission request within this many seconds, over all its mutators; a "
                            "late mutator's changes are dropped (default 4, kept inside the API server's timeout)")
    serve.add_argument("--local", action="store_true",
                       help="serve with no API server: caches come from --objects, controllers do not run "
                            "(the default when no kubeconfig is found and no plugin watches anything)")
    serve.add_argument("--objects", nargs="+", action="extend", default=[], metavar="FILE",
                       help="with --local: YAML/JSON files whose objects fill the caches")
    serve.add_argument("--no-leader-elect", action="store_true",
                       help="run controllers without electing a leader (a single replica)")
    serve.add_argument("--lease-namespace", help="namespace of the leader Lease (default: the pod's)")
    serve.add_argument("--lease-name", help="name of the leader Lease (default admission-host)")
    serve.add_argument("--shutdown-delay-seconds", type=_non_negative_seconds, default=None, metavar="SECONDS",
                       help="after SIGTERM, fail readiness but keep answering this long before closing the "
                            "port, so the endpoint's removal reaches the API server first (default 5; a "
                            "second SIGTERM, or SIGINT, skips it)")
    serve.add_argument("--shutdown-grace-seconds", type=float, default=None,
                       help="how long SIGTERM waits for requests in flight (default 15)")
    serve.add_argument("--cert-reload-interval", type=_positive_seconds, default=None, metavar="SECONDS",
                       help="how often the certificate files are checked for changes (default 5)")
    certs = serve.add_argument_group(
        "serving certificate in a Secret",
        "instead of --tls-cert-file/--tls-private-key-file: the host keeps a CA and a serving certificate "
        "in a Secret of its namespace, sets the webhook's caBundle and renews the certificate before it expires")
    certs.add_argument("--cert-secret", metavar="NAME", help="the Secret (type kubernetes.io/tls) to keep them in")
    certs.add_argument("--cert-dir", metavar="DIR",
                       help="writable directory for the PEM files served (default /run/admission-host/tls)")
    certs.add_argument("--service-name", metavar="NAME",
                       help="the Service in front of the host, for the certificate's DNS names (default admission-host)")
    certs.add_argument("--webhook-configuration", metavar="NAME",
                       help="the MutatingWebhookConfiguration whose caBundle is kept up to date")
    certs.add_argument("--cert-validity", type=_positive_seconds, metavar="SECONDS",
                       help="validity of a serving certificate (default one year); renewed when a third of it, "
                            "at most 30 days, is left")
    certs.add_argument("--cert-extra-san", action="append", default=None, metavar="NAME",
                       help="one more DNS name or IP address for the certificate (repeatable)")
    certs.add_argument("--no-match-conditions", action="store_true",
                       help="leave the webhooks' matchConditions alone (by default they are kept equal to what "
                            "the enabled mutators skip, on Kubernetes 1.28+; see webhook-config)")

    mutate = sub.add_parser("mutate", help="run the admission pipeline offline on one request")
    _common(mutate)
    mutate.add_argument("review", metavar="REVIEW_FILE",
                        help="an AdmissionReview (v1 or v1beta1) or a bare object (Pod, Binding), JSON or YAML; - for stdin")
    mutate.add_argument("--objects", nargs="+", action="extend", default=[], metavar="FILE",
                        help="YAML/JSON files (multi-document) whose objects fill the caches")
    mutate.add_argument("--output", "-o", choices=("response", "object", "patch"), default="response",
                        help="the AdmissionReview response (default), the object with the patch applied, "
                             "or the JSONPatch, one operation a line")
    mutate.add_argument("--dry-run", action="store_true", help="mark the request dryRun")

    explain = sub.add_parser("explain", help="why a pod is (or would be) mutated the way it is")
    _common(explain)
    explain.add_argument("pod", metavar="POD",
                         help="a Pod file (JSON/YAML), or NAMESPACE/NAME of a pod in the cluster with --kubeconfig")
    explain.add_argument("--objects", nargs="+", action="extend", default=[], metavar="FILE",
                         help="YAML/JSON files whose objects fill the caches (offline)")
    explain.add_argument("--kubeconfig", help="explain against a live cluster's Selectors, namespaces and nodes")
    explain.add_argument("--context", help="kubeconfig context")

    review = sub.add_parser("review", help="print the AdmissionReview the API server would send for an object")
    review.add_argument("object", metavar="FILE", help="the object (one document, JSON or YAML); - for stdin")
    review.add_argument("--operation", type=str.upper, choices=("CREATE", "UPDATE", "DELETE"), default="CREATE")
    review.add_argument("--old", metavar="OLD_FILE",
                        help="with --operation UPDATE: the object before the update (default: the object itself)")
    review.add_argument("--binding", metavar="NODE",
                        help="instead: the pods/binding CREATE of the scheduler binding the pod to NODE")
    review.add_argument("--user", help="userInfo.username (default admission-host-review; system:kube-scheduler "
                                       "for a binding); a service account's also gets its groups")
    review.set_defaults(config=None, plugins=None, log_level=None, log_format=None)  # no plugin is loaded

    plugins = sub.add_parser("plugins", help="list installed plugins and what they declare")
    _common(plugins)
    plugins.add_argument("--check", action="store_true",
                         help="check what needs no options (each entry point loads, its hookimpls are known "
                              "hooks, its options declaration is well formed) and list the plugins and their "
                              "options, without starting their declarations: the build check of an image, "
                              "where the deployment's options are not known")

    webhook = sub.add_parser("webhook-config", help="print the MutatingWebhookConfiguration the enabled plugins "
                                                    "need (rules, matchConditions), as YAML for kubectl apply")
    _common(webhook)
    webhook.add_argument("--webhook-configuration", metavar="NAME", help="its name (default admission-host)")
    webhook.add_argument("--service-name", metavar="NAME", help="the host's Service (default admission-host)")
    webhook.add_argument("--namespace", default="admission-host", help="the Service's namespace (default admission-host)")
    webhook.add_argument("--no-match-conditions", action="store_true",
                         help="without matchConditions (Kubernetes before 1.28 has none)")
    return parser


def _workers_arg(value: str) -> int:
    from framework.web.workers import workers_arg

    try:
        return workers_arg(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def make_config(args) -> Config:
    config = load_file(args.config)
    if args.plugins is not None:
        config.enabled_plugins = args.plugins
    for attr in ("bind_address", "port", "tls_cert_file", "tls_private_key_file", "kubeconfig", "context",
                 "threads", "workers", "max_body_bytes", "admission_deadline_seconds", "lease_namespace", "lease_name", "shutdown_delay_seconds", "shutdown_grace_seconds",
                 "cert_reload_interval", "log_level", "log_format"):
        value = getattr(args, attr, None)
        if value is not None:
            setattr(config, attr, value)
    if config.admission_deadline_seconds <= 0:
        raise ConfigError("the admission deadline must be more than 0 seconds")
    _certificate_options(args, config)
    if getattr(args, "insecure_http", False):
        config.insecure_http = True
    if getattr(args, "no_leader_elect", False):
        config.leader_election = False
    return config


def _certificate_options(args, config: Config) -> None:
    for attr in ("cert_secret", "cert_dir", "service_name", "webhook_configuration", "cert_validity"):
        value = getattr(args, attr, None)
        if value is not None:
            setattr(config, attr, value)
    for value in getattr(args, "cert_extra_san", None) or ():
        config.cert_extra_sans.extend(v.strip() for v in value.split(",") if v.strip())
    if config.cert_secret and (config.tls_cert_file or config.tls_private_key_file):
        raise ConfigError("--cert-secret and --tls-cert-file/--tls-private-key-file exclude each other")
    if config.cert_secret and (config.insecure_http or getattr(args, "insecure_http", False)):
        raise ConfigError("--cert-secret needs HTTPS; it cannot be used with --insecure-http")


def read_documents(path: str) -> List[dict]:
    """Every object in a YAML/JSON file (multi-document; ``List`` kinds are unpacked)."""
    try:
        text = sys.stdin.read() if path == "-" else open(path, encoding="utf-8").read()
        docs = list(yaml.safe_load_all(text))
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not a text file ({exc.reason} at byte {exc.start})") from None
    except yaml.YAMLError as exc:  # on one line: its own message spans several
        mark = getattr(exc, "problem_mark", None)
        what = ", ".join(p for p in (getattr(exc, "context", None), getattr(exc, "problem", None)) if p) or str(exc)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise ValueError(f"{path}: not YAML or JSON: {what}{where}") from None
    out = []
    for doc in docs:
        if doc is None:
            continue
        if not isinstance(doc, dict):
            raise ValueError(f"{path}: expected objects, found a {type(doc).__name__}")
        if str(doc.get("kind") or "").endswith("List") and isinstance(doc.get("items"), list):
            out.extend(doc["items"])
        else:
            out.append(doc)
    if not all(isinstance(obj, dict) for obj in out):
        raise ValueError(f"{path}: a List's items must be objects")
    return out


def read_object(path: str) -> dict:
    """The one object of a YAML/JSON file, which has a kind."""
    docs = read_documents(path)
    if len(docs) != 1:
        raise ValueError(f"{path}: expected exactly one object, found {len(docs)}")
    if not docs[0].get("kind") or not isinstance(docs[0]["kind"], str):
        raise ValueError(f"{path}: the object has no kind")
    return docs[0]


def load_objects(host, paths: List[str]) -> None:
    """Fill the host's caches from --objects files, warning about what they cannot fill."""
    from framework.offline import load_files

    load_files(host, [(path, read_documents(path)) for path in paths])


def as_review(obj: dict, dry_run: bool = False) -> dict:
    """Wrap a bare object as the AdmissionReview the API server would send for its creation."""
    if obj.get("kind") == "AdmissionReview":
        return obj
    meta = obj.setdefault("metadata", {})
    if obj.get("kind") in ("Pod", "Binding") and not meta.get("namespace"):
        meta["namespace"] = "default"
    return build(obj, dry_run=dry_run, username="admission-host-mutate")


def cmd_mutate(args, config: Config) -> int:
    from framework.host import Host

    review = as_review(read_object(args.review), args.dry_run)
    host = Host(config)
    try:
        load_objects(host, args.objects)
        host.start()
        api_version, raw = validate(clone(review))
        outcome = host.pipeline.admit(host.pipeline.request(raw))
        if args.output == "response":
            sys.stdout.write(orjson.dumps(answer(api_version, raw["uid"], outcome),
                                          option=orjson.OPT_INDENT_2).decode() + "\n")
            return 0
        for warning in outcome.warnings:
            print(f"warning: {warning}", file=sys.stderr)
        if outcome.denied:
            print(f"denied: {outcome.denied[1]}", file=sys.stderr)
            return 1
        patch = outcome.patch
        if args.output == "patch":
            if not patch:
                print("no change", file=sys.stderr)
            # A list still, so it can be fed to kubectl patch --type=json, but an operation a line.
            lines = [orjson.dumps(op).decode() for op in patch]
            sys.stdout.write("[" + ",\n ".join(lines) + "]\n")
            return 0
        obj = review["request"]["object"]
        if patch:
            obj = jsonpatch.apply_patch(obj, patch)
        sys.stdout.write(orjson.dumps(obj, option=orjson.OPT_INDENT_2).decode() + "\n")
        return 0
    finally:
        host.stop()


def cmd_serve(args, config: Config) -> int:
    from framework.kube.client import CredentialsError, KubeClient
    from framework.web.workers import Supervisor, listening_socket

    kube, no_cluster = None, None
    if not args.local:
        try:
            kube = KubeClient.from_kubeconfig(config.kubeconfig, config.context)
        except CredentialsError as exc:
            no_cluster = exc
    if kube is None and (config.cert_secret or args.local and (config.kubeconfig or config.context)):
        raise ConfigError("--cert-secret and --kubeconfig/--context need an API server; drop --local")
    if args.objects and kube is not None:
        raise ConfigError("--objects fills the caches only with --local (with an API server, watches do)")
    certs = None
    if config.cert_secret:
        from framework.certs import CertManager

        certs = CertManager.from_config(kube, config)
        certs.prepare()  # a throwaway pair until the Secret's is in place
        config.tls_cert_file, config.tls_private_key_file = certs.cert_file, certs.key_file
    if config.workers == 1:
        return _serve(args, config, kube, no_cluster, certs)
    # The supervisor forks: no thread of its own may hold a lock at that moment.
    logs.setup(args.log_level or config.log_level or "INFO", config.log_format, buffered=False)
    if not config.leader_election:
        log.info("no leader election: controllers run in worker 0 only")
    sock = listening_socket(config.bind_address, config.port)
    return Supervisor(config.workers, lambda index: _serve(args, config, kube, no_cluster, certs, sock, index)).run()


def _serve(args, config: Config, kube, no_cluster, certs, sock=None, worker: int = 0) -> int:
    """One serving process: the only one, or worker ``worker`` of several on the socket ``sock``."""
    from framework.host import Host
    from framework.web.serve import Server

    checks = []
    if sock is not None:
        logs.setup(args.log_level or config.log_level or "INFO", config.log_format, worker=worker)
        config.identity = f"{config.identity}-{worker}"  # each worker stands for the Lease alone
        if worker and certs is not None:  # worker 0 keeps the Secret; the others serve its files
            from framework.certs import bootstrap_in_use

            cert_file, certs = certs.cert_file, None
            checks.append(lambda: bootstrap_in_use(cert_file))
    host = Host(config, kube)
    if kube is None:
        if not args.local and host.watches:
            raise ConfigError(f"no API server ({no_cluster}), and plugins watch {', '.join(sorted(host.watches))}: "
                              f"give --kubeconfig, or --local with --objects FILE to fill their caches from files")
        load_objects(host, args.objects)
        log.info("serving with no API server: caches from %d file(s), controllers off", len(args.objects))
    server = Server(host, config, sock=sock, controllers=config.leader_election or not worker)
    if certs is not None:
        checks.append(certs.not_ready)
        certs.on_change = server.tls.maybe_reload
        if not args.no_match_conditions:
            from framework.webhook import match_conditions

            certs.match_conditions = match_conditions(host.pipeline.mutators)
        certs.start()
    host.readiness_checks += checks
    server.install_signal_handlers()
    try:
        server.run()
    finally:
        if certs is not None:
            certs.stop()
    return 0


def cmd_explain(args, config: Config) -> int:
    from framework.host import Host
    from framework.kube.client import KubeClient

    if args.kubeconfig or (not os.path.exists(args.pod) and "/" in args.pod):
        kube = KubeClient.from_kubeconfig(args.kubeconfig, args.context)
        namespace, _, name = args.pod.partition("/")
        obj = kube.get(f"/api/v1/namespaces/{namespace}/pods/{name}")
        host = Host(config, kube)
        host.start(controllers=False)
        for store in host.stores.values():
            if not store.wait_synced(30):
                raise ValueError(f"cache {store.name} did not sync within 30s")
    else:
        obj = read_object(args.pod)
        host = Host(config)
        load_objects(host, args.objects)
        host.start()
    review = as_review(obj, dry_run=True)
    obj = review["request"]["object"]
    for name, lines in host.each_plugin("admission_host_explain", obj=obj):
        if lines:
            print(f"== {name}")
            for line in lines:
                print(f"  {line}")
    outcome = host.pipeline.admit(host.pipeline.request(validate(clone(review))[1]))
    print("== result (as a dry-run creation)")
    patch = [] if outcome.denied else outcome.patch
    for op in patch:
        value = orjson.dumps(op.get("value")).decode() if "value" in op else ""
        print(f"  {op['op']} {op['path']} {value}".rstrip())
    if not patch:
        print("  no change")
    for warning in outcome.warnings:
        print(f"  warning: {warning}")
    for key, value in outcome.audit_annotations.items():
        print(f"  audit: {key}={value}")
    host.stop()
    return 0


def cmd_review(args, config: Config) -> int:
    from framework.offline import server_review

    old = read_object(args.old) if args.old else None
    review = server_review(read_object(args.object), args.object, operation=args.operation, old=old,
                           old_path=args.old, node=args.binding, username=args.user)
    sys.stdout.write(orjson.dumps(review, option=orjson.OPT_INDENT_2).decode() + "\n")
    return 0


def cmd_plugins(args, config: Config) -> int:
    from framework.host import Host
    from framework.plugins import check, describe, get_plugin_manager

    pm = get_plugin_manager(config.enabled_plugins)  # an entry point that fails to load, or an unknown hook: exit 2
    out: dict = {"plugins": describe(pm)}
    if args.check:
        # No Host: the declaration hooks take the plugins' options, which a build does not have.
        problems = check(pm)
        if problems:
            out["error"] = "; ".join(problems)
    else:
        try:  # what they declare needs them started; the list above is shown even when that fails
            host = Host(config, pluginmanager=pm)
        except PluginError as exc:
            out["error"] = str(exc)
        else:
            out.update(mutators=[m.name for m in host.pipeline.mutators],
                       watches=[w.name for w in host.watches.values()],
                       controllers=[c.name for c in host.controllers])
    # repr: a default that is not JSON (a timedelta, which --check points out) is listed all the same.
    sys.stdout.write(orjson.dumps(out, default=repr, option=orjson.OPT_INDENT_2).decode() + "\n")
    if "error" in out:
        print(f"admission-host: error: {out['error']}", file=sys.stderr)
        return 2
    return 0


def cmd_webhook_config(args, config: Config) -> int:
    from framework.host import Host
    from framework.webhook import configuration

    host = Host(config)  # offline: only what the plugins declare is needed
    try:
        out = configuration(host.pipeline.mutators, name=config.webhook_configuration or "admission-host",
                            service=config.service_name, namespace=args.namespace,
                            with_match_conditions=not args.no_match_conditions)
    finally:
        host.stop()
    sys.stdout.write(yaml.safe_dump(out, sort_keys=False, width=120))
    return 0


def main(argv: Optional[Iterable[str]] = None) -> int:
    from framework.kube.client import CredentialsError

    args = build_parser().parse_args(argv)
    try:
        config = make_config(args)
        # Offline commands print results on stdout; keep their logs to warnings unless asked.
        default_level = "INFO" if args.command == "serve" else "WARNING"
        logs.setup(args.log_level or config.log_level or default_level, config.log_format)
        commands = {"serve": cmd_serve, "mutate": cmd_mutate, "explain": cmd_explain, "review": cmd_review,
                    "plugins": cmd_plugins, "webhook-config": cmd_webhook_config}
        return commands[args.command](args, config)
    except (ConfigError, PluginError, ReviewError, ValueError, OSError, yaml.YAMLError, CredentialsError) as exc:
        print(f"admission-host: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
