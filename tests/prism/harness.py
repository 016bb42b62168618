"""A prism wired to fake master and stores, on a MemoryReactorClock."""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass
from typing import Any

from treq.testing import StubTreq
from twisted.internet.defer import maybeDeferred

from stretchfs.wire.master import MasterClient
from tests.fakes import FakeRedisStore
from tests.helpers import CLUSTER_KEY, result_of
from tests.prism.fakes import TOKEN, FakeMaster, FakeStore, Network, store_peers

STORES = [("store1", "10.0.0.1", "a"), ("store2", "10.0.0.2", "b"),
          ("store3", "10.0.0.3", "c")]


@dataclass
class Prism:
    """A started prism with its fakes."""

    clock: Any
    network: Network
    master: FakeMaster
    stores: dict[str, FakeStore]
    service: Any
    client: StubTreq

    @property
    def api(self) -> Any:
        """The PrismAPI."""
        return self.service.api

    def pump(self, seconds: float = 0.0) -> None:
        """Advance time and deliver in-memory traffic."""
        for _ in range(3):
            self.network.flush()
            self.client.flush()
        if seconds:
            self.clock.advance(seconds)
        for _ in range(3):
            self.network.flush()
            self.client.flush()

    def call(self, method: str, path: str, body: Any = None, token: str | None = TOKEN,
             headers: dict[str, str] | None = None, data: bytes | None = None) -> tuple[
            int, Any, Any]:
        """One request to the prism: (status, decoded JSON or raw bytes, headers)."""
        sent = {k: [v] for k, v in (headers or {}).items()}
        if token:
            sent["X-STRETCHFS-Token"] = [token]
        if body is not None:
            data = json.dumps(body).encode()
            sent.setdefault("Content-Type", ["application/json"])
        d = self.client.request(method, "http://prism" + path, data=data, headers=sent,
                                allow_redirects=False)
        self.pump()
        response = result_of(d)
        content = result_of(self.client.content(response))
        try:
            decoded = json.loads(content) if content else None
        except ValueError:
            decoded = content
        return response.code, decoded, response.headers

    def stop(self) -> None:
        """Stop the service and pump until stopped."""
        d = self.service.stopService()
        self.pump()
        result_of(d)


def sha1_of(data: bytes) -> str:
    """Hex SHA1."""
    return hashlib.sha1(data).hexdigest()


def make_prism(tmp_path: Any, *, start: bool = True, extra: str = "", stores: Any = None,
               prefill: Any = None, retrieve_agent: Any = None) -> Prism:
    """Build (and start) a prism over fakes; `prefill(master)` runs before start."""
    from twisted.internet.testing import MemoryReactorClock

    from stretchfs.config import parse_config
    from stretchfs.prism.service import build_prism_service
    from tests.helpers import minimal_config

    clock = MemoryReactorClock()
    clock.advance(1_700_000_000)
    network = Network()
    master = FakeMaster(clock)
    network.add("master", master.app.resource())
    specs = stores if stores is not None else STORES
    fakes = {}
    for name, host, _zone in specs:
        fakes[name] = FakeStore(name)
        network.add(host, fakes[name].app.resource())
    if prefill is not None:
        prefill(master)
    tmp = tmp_path / ("tmp-" + uuid.uuid4().hex[:6])
    tmp.mkdir()
    text = minimal_config("prism", master_url="http://master") + \
        "\n[prism]\ntmp_dir = \"{}\"\n{}".format(tmp, extra)
    config = parse_config("prism", text, "test.toml", {})
    peers = store_peers(specs)
    master_client = MasterClient(network, "http://master", CLUSTER_KEY, 10.0, clock)
    service = build_prism_service(config, reactor=clock, redis=FakeRedisStore(clock), udp=False,
                                  http=network, peers=peers, master=master_client,
                                  retrieve_agent=retrieve_agent or object(),
                                  run_blocking=maybeDeferred)
    # The registry comes from the test, not from the fake master's /peers.
    master.peers = [{"name": n, "role": "store", "host": h, "port": 80, "ping_port": 0,
                     "zone": z, "url": "http://" + h} for n, h, z in specs]
    client = StubTreq(service.api.resource())
    client._agent._serverFactory.requestFactory = service.request_factory
    prism = Prism(clock, network, master, fakes, service, client)
    if start:
        service.startService()
        prism.pump()
    return prism


def multipart(fields: dict[str, str], files: dict[str, tuple[str, str, bytes]],
              boundary: str = "XyZzY0123") -> tuple[bytes, str]:
    """A multipart/form-data body and its Content-Type."""
    parts = []
    for name, value in fields.items():
        parts.append('--{}\r\nContent-Disposition: form-data; name="{}"\r\n\r\n{}\r\n'.format(
            boundary, name, value).encode())
    for name, (filename, ctype, data) in files.items():
        head = '--{}\r\nContent-Disposition: form-data; name="{}"; filename="{}"\r\n'.format(
            boundary, name, filename)
        if ctype:
            head += "Content-Type: {}\r\n".format(ctype)
        head = (head + "\r\n").encode()
        parts.append(head + data + b"\r\n")
    parts.append("--{}--\r\n".format(boundary).encode())
    return b"".join(parts), "multipart/form-data; boundary=" + boundary

