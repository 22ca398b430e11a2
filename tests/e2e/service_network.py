"""A Service network for a control plane with no kubelet and no kube-proxy.

The API server calls a webhook configured with ``clientConfig.service`` at the Service's ClusterIP
and port, verifying the certificate for ``NAME.NAMESPACE.svc`` (seen on 1.37: kube-apiserver
without ``--enable-aggregator-routing`` dials ``CLUSTER-IP:PORT``): an address only a node's
kube-proxy routes. Here, the API server is given an egress selector (``--egress-selector-config-file``,
the mechanism Konnectivity uses) whose "cluster" traffic goes through an HTTP CONNECT proxy on a
Unix socket. This proxy sends each Service address the test routed to a process on loopback and
refuses any other (so a call that should not happen fails loudly). The webhook configuration,
its Service reference and the certificate's names stay exactly as installed.
"""

from __future__ import annotations

import select
import socket
import socketserver
import threading
from pathlib import Path
from typing import Dict, Tuple

EGRESS_CONFIG = """\
apiVersion: apiserver.k8s.io/v1beta1
kind: EgressSelectorConfiguration
egressSelections:
  - name: cluster
    connection:
      proxyProtocol: HTTPConnect
      transport:
        uds:
          udsName: {socket}
"""


class ServiceNetwork:
    """``route(service, 8443)`` sends the Service's ClusterIP and (only) port to 127.0.0.1:8443."""

    def __init__(self, workdir: Path):
        self.socket_path = Path(workdir) / "service-network.sock"
        self.config_path = Path(workdir) / "egress-selector.yaml"
        self.config_path.write_text(EGRESS_CONFIG.format(socket=self.socket_path))
        self.routes: Dict[str, Tuple[str, int]] = {}
        self.refused: list = []  # CONNECT targets that had no route
        self._server = None

    def route(self, service: dict, to_port: int, to_host: str = "127.0.0.1") -> None:
        (port,) = service["spec"]["ports"]
        self.routes[f"{service['spec']['clusterIP']}:{port['port']}"] = (to_host, to_port)

    def start(self) -> "ServiceNetwork":
        if self._server is None:
            self.socket_path.unlink(missing_ok=True)
            self._server = _Server(str(self.socket_path), _Tunnel)
            self._server.network = self
            threading.Thread(target=self._server.serve_forever, name="service-network", daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    network: ServiceNetwork


class _Tunnel(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.request.recv(4096)
            if not chunk:
                return
            head += chunk
        # The API server writes nothing after the header until it reads the answer.
        line = head.split(b"\r\n", 1)[0].decode("latin-1").split()
        target = line[1] if len(line) == 3 and line[0] == "CONNECT" else ""
        to = self.server.network.routes.get(target)
        if to is None:
            self.server.network.refused.append(target)
            self.request.sendall(b"HTTP/1.1 502 Bad Gateway\r\n\r\n")
            return
        try:
            upstream = socket.create_connection(to, timeout=5)
        except OSError:
            self.request.sendall(b"HTTP/1.1 503 Service Unavailable\r\n\r\n")
            return
        upstream.settimeout(None)
        self.request.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        _splice(self.request, upstream)


def _splice(a: socket.socket, b: socket.socket) -> None:
    peers = {a: b, b: a}
    try:
        while True:
            readable, _, _ = select.select(list(peers), [], [], 300)
            if not readable:
                return
            for s in readable:
                data = s.recv(65536)
                if not data:
                    return
                peers[s].sendall(data)
    except OSError:
        pass
    finally:
        b.close()
