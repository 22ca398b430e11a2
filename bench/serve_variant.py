"""One benchmark server: the real host, or the same server answering a constant AdmissionReview.

    python -m bench.serve_variant --variant real --port 8443 --tls-cert-file tls.crt --tls-private-key-file tls.key
    python -m bench.serve_variant --variant constant ...

Both are ``framework.host.Host`` + ``framework.web.serve.Server`` (waitress, the TLS channel,
falcon, the ``/mutate`` resource with its content-type and body-size checks), configured as
``admission-host serve`` would be, with the benchmark plugin (``bench/plugin.py``) as the only
plugin. The ``constant`` variant swaps the admission pipeline for one that returns the answer the
real pipeline gives for the benchmark's review, precomputed: the difference between the two is the
pipeline's cost (parse, working copy, mutator, patch, serialise, metrics, the log line).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

import orjson

from bench import plugin
from bench.pods import DEFAULT_SIZE, make_pod, review
from framework import logs
from framework.config import Config
from framework.host import Host
from framework.web.serve import Server


class ConstantPipeline:
    """Quacks like ``Pipeline`` for the ``/mutate`` resource: the same answer to every call."""

    def __init__(self, answer: bytes, mutators):
        self.answer = answer
        self.mutators = mutators

    def handle(self, body: bytes) -> bytes:
        return self.answer


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.serve_variant")
    parser.add_argument("--variant", choices=("real", "constant"), required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--tls-cert-file")
    parser.add_argument("--tls-private-key-file")
    parser.add_argument("--insecure-http", action="store_true")
    parser.add_argument("--threads", type=int, default=Config.threads)
    parser.add_argument("--size", type=int, default=DEFAULT_SIZE, help="pod size of the constant answer")
    parser.add_argument("--log-level", default="INFO", help="as admission-host serve (default INFO)")
    args = parser.parse_args(argv)

    logs.setup(args.log_level)
    config = Config(enabled_plugins=[], bind_address="127.0.0.1", port=args.port, threads=args.threads,
                    tls_cert_file=args.tls_cert_file, tls_private_key_file=args.tls_private_key_file,
                    insecure_http=args.insecure_http, leader_election=False)
    host = Host(config, None, extra_plugins=[plugin])
    if args.variant == "constant":
        level = logging.getLogger().level
        logging.getLogger().setLevel(logging.WARNING)  # the precomputing call is not a request
        answer = host.pipeline.handle(orjson.dumps(review(make_pod(args.size), uid="bench")))  # the uid bench.server sends
        logging.getLogger().setLevel(level)
        host.pipeline = ConstantPipeline(answer, host.pipeline.mutators)
    server = Server(host, config)
    server.install_signal_handlers()
    print(f"ready pid={os.getpid()} variant={args.variant}", file=sys.stderr, flush=True)
    server.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
