"""Run ``admission-host serve`` with extra plugin modules that are not installed as entry points.

    python tests/integration/launcher.py --extra-plugin tests.integration.test_plugin serve --port ...

Everything after the ``--extra-plugin`` options is parsed exactly as by ``admission-host``; the
host is built the same way as ``admission-host serve`` builds it, with the extra modules
registered beside the enabled entry-point plugins.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from framework import cli, logs  # noqa: E402


def main(argv=None) -> int:
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--extra-plugin", action="append", default=[])
    ours, rest = pre.parse_known_args(argv)
    args = cli.build_parser().parse_args(rest)
    if args.command != "serve":
        raise SystemExit("the launcher only runs 'serve'")
    config = cli.make_config(args)
    logs.setup(args.log_level or config.log_level or "INFO", config.log_format)

    from framework.host import Host
    from framework.kube.client import KubeClient
    from framework.web.serve import Server

    extra = [importlib.import_module(name) for name in ours.extra_plugin]
    kube = KubeClient.from_kubeconfig(config.kubeconfig, config.context)
    server = Server(Host(config, kube, extra_plugins=extra), config)
    server.install_signal_handlers()
    server.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
