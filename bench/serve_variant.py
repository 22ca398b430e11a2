"""One benchmark server: the real host, or the same server answering a constant AdmissionReview.

    python -m bench.serve_variant --variant real --port 8443 --tls-cert-file tls.crt --tls-private-key-file tls.key
    python -m bench.serve_variant --variant constant ...
    python -m bench.serve_variant --plugin eci --selectors 1000 --namespaces 10000 --nodes 5000 \
        --pending-pods 20000 --variant real --port 8443 --tls-cert-file tls.crt --tls-private-key-file tls.key

Both are ``framework.host.Host`` + ``framework.web.serve.Server`` (waitress, the TLS channel,
falcon, the ``/mutate`` resource with its content-type and body-size checks), configured as
``admission-host serve`` would be. The plugin is the benchmark's (``bench/plugin.py``) or, with
``--plugin eci``, ECI-Profile from its entry point, with the caches filled offline from the
generated cluster of ``bench/world.py`` (``Host(config, kube=None)``, ``host.load_objects``;
``Server.run`` then marks them synced, and ``/readyz`` answers 200). Without an API server the
binding path skips its label PATCH (a side effect, as on a dry run).

The ``constant`` variant swaps the admission pipeline for one that returns one answer, precomputed
by the real pipeline (for the benchmark's review, or for ``--constant-body``): the difference
between the two is the pipeline's cost (parse, working copy, mutators, patch, serialise, metrics,
the log line).

The ``echo`` variant answers a real API server (which checks each answer's uid against its
request's): every pod CREATE gets one precomputed patch appending the virtual-node toleration (the
API server's DefaultTolerationSeconds has given every pod a list to append to), and every
other request is allowed unchanged, each with its request's uid. It is the fastest webhook this
stack can be that still sends a burst's pods to virtual nodes: ``python -m bench.spike``'s ceiling.
"""

from __future__ import annotations

import argparse
import base64
import logging
import os
import re
import sys

import orjson

from bench import plugin, world
from bench.pods import DEFAULT_SIZE, make_pod, review
from framework import logs
from framework.config import Config
from framework.host import Host
from framework.web.serve import Server


class ConstantPipeline:
    """Quacks like ``Pipeline`` for the ``/mutate`` resource: the same answer to every call."""

    def __init__(self, answer: bytes, pipeline):
        self.answer = answer
        self.mutators = pipeline.mutators
        self.nonblocking = pipeline.nonblocking  # served on the same thread as the real one

    def handle(self, body: bytes, timeout=None, arrived=None) -> bytes:
        return self.answer


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.serve_variant")
    parser.add_argument("--variant", choices=("real", "constant", "echo"), required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--tls-cert-file")
    parser.add_argument("--tls-private-key-file")
    parser.add_argument("--insecure-http", action="store_true")
    parser.add_argument("--threads", type=int, default=Config.threads)
    parser.add_argument("--workers", type=int, default=1, help="serving processes, as serve --workers (1)")
    parser.add_argument("--size", type=int, default=DEFAULT_SIZE, help="pod size of the constant answer")
    parser.add_argument("--log-level", default="INFO", help="as admission-host serve (default INFO)")
    parser.add_argument("--plugin", choices=("bench", "eci"), default="bench",
                        help="the benchmark mutator (bench) or ECI-Profile with generated caches (eci)")
    defaults = world.Params()
    parser.add_argument("--selectors", type=int, default=defaults.selectors, help="eci: Selectors")
    parser.add_argument("--namespaces", type=int, default=defaults.namespaces, help="eci: namespaces")
    parser.add_argument("--nodes", type=int, default=defaults.nodes, help="eci: nodes (a tenth virtual)")
    parser.add_argument("--pending-pods", type=int, default=defaults.pending_pods, help="eci: pending pods")
    parser.add_argument("--pod-size", type=int, default=DEFAULT_SIZE, help="eci: size of the pending pods listed")
    parser.add_argument("--constant-body", help="constant: the review whose answer is served (default: the "
                                                "benchmark's review)")
    args = parser.parse_args(argv)

    config = Config(enabled_plugins=["eci_profile"] if args.plugin == "eci" else [], bind_address="127.0.0.1",
                    port=args.port, threads=args.threads,
                    tls_cert_file=args.tls_cert_file, tls_private_key_file=args.tls_private_key_file,
                    insecure_http=args.insecure_http, leader_election=False)
    if args.workers == 1:
        logs.setup(args.log_level)
        return serve(args, config)
    from framework.web.workers import Supervisor, listening_socket

    logs.setup(args.log_level, buffered=False)
    sock = listening_socket(config.bind_address, config.port)

    def work(index: int) -> int:
        logs.setup(args.log_level, worker=index)
        return serve(args, config, sock)

    return Supervisor(args.workers, work).run()


class EchoPipeline(ConstantPipeline):
    """A pod CREATE's toleration patch, or an unchanged answer, with the request's uid (found, not parsed)."""

    UID = re.compile(rb'"uid"\s*:\s*"([^"]*)"')
    TOLERATION = {"key": "k8s.aliyun.com/vnode", "operator": "Equal", "value": "true", "effect": "NoSchedule"}

    def __init__(self, pipeline):
        super().__init__(b"", pipeline)
        # Appended: replacing the list would drop the tolerations DefaultTolerationSeconds added,
        # which it adds again, and the API server then calls the webhook again (IfNeeded).
        patch = base64.b64encode(orjson.dumps([{"op": "add", "path": "/spec/tolerations/-", "value": self.TOLERATION}]))
        self.answers = {pod: orjson.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": {
            "uid": "UID", "allowed": True, **({"patchType": "JSONPatch", "patch": patch.decode()} if pod else {})}})
            .split(b'"UID"') for pod in (True, False)}

    def handle(self, body: bytes, timeout=None, arrived=None) -> bytes:
        uid = self.UID.search(body, body.find(b'"request"'))
        pod = b'"subResource":"binding"' not in body  # the webhook is registered for pods and pods/binding
        head, tail = self.answers[pod]
        return head + b'"' + (uid.group(1) if uid else b"") + b'"' + tail


def serve(args, config: Config, sock=None) -> int:
    if args.plugin == "eci":
        host = Host(config, None)
        params = world.Params(selectors=args.selectors, namespaces=args.namespaces, nodes=args.nodes,
                              pending_pods=args.pending_pods, pod_size=args.pod_size)
        unused = host.load_objects(world.objects(params))
        assert not unused, f"{len(unused)} generated objects fit no watch"
    else:
        host = Host(config, None, extra_plugins=[plugin])
    if args.variant == "echo":
        host.pipeline = EchoPipeline(host.pipeline)
    elif args.variant == "constant":
        level = logging.getLogger().level
        logging.getLogger().setLevel(logging.WARNING)  # the precomputing call is not a request
        if args.constant_body:
            with open(args.constant_body, "rb") as f:
                body = f.read()
        else:
            body = orjson.dumps(review(make_pod(args.size), uid="bench"))  # the uid bench.server sends
        answer = host.pipeline.handle(body)
        logging.getLogger().setLevel(level)
        host.pipeline = ConstantPipeline(answer, host.pipeline)
    server = Server(host, config, sock=sock)
    server.install_signal_handlers()
    print(f"ready pid={os.getpid()} variant={args.variant}", file=sys.stderr, flush=True)
    server.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
