"""The sandbox's network, for real: a sandboxed job tries PostgreSQL, the web app, the worker's own address,
the cloud metadata address, a private address and an outside-looking one.

The "outside" is a network namespace joined to this machine by a veth pair, serving HTTP on an address in
198.51.100.0/24 (outside-looking) and one in 10.99.0.0/16 (private), picked at random so parallel runs do not
collide. Needs root, iproute2, nftables and pasta (passt)."""
import os
import random
import socket
import subprocess
import sys
import time
import urllib.parse
import uuid

import pytest

from volumes.runner import network
from volumes.runner.run import job_run
from volumes.services.jobs import job_submit

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the sandbox network tests need a root worker")

PROBE = """# sandbox
import errno, socket

def main(targets):
    out = {}
    for name, (host, port) in targets.items():
        try:
            socket.create_connection((host, port), timeout=3).close()
            out[name] = "connected"
        except socket.timeout:
            out[name] = "timeout"
        except OSError as error:
            out[name] = errno.errorcode.get(error.errno, str(error))
    return out
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sh(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True)


@pytest.fixture(scope="module")
def outside():
    """(outside-looking address, private address, port) of an HTTP server reachable from this machine."""
    suffix = uuid.uuid4().hex[:6]
    ns, host_if, ns_if = f"vt-out-{suffix}", f"vth{suffix}", f"vto{suffix}"
    block = 4 * random.randrange(1, 63)
    gateway, address = f"198.51.100.{block + 1}", f"198.51.100.{block + 2}"
    private = f"10.99.{random.randrange(256)}.{random.randrange(1, 255)}"
    port = free_port()
    sh("ip", "netns", "add", ns)
    server = None
    try:
        sh("ip", "link", "add", host_if, "type", "veth", "peer", "name", ns_if, "netns", ns)
        sh("ip", "addr", "add", f"{gateway}/30", "dev", host_if)
        sh("ip", "link", "set", host_if, "up")
        sh("ip", "-n", ns, "addr", "add", f"{address}/30", "dev", ns_if)
        sh("ip", "-n", ns, "addr", "add", f"{private}/32", "dev", ns_if)
        sh("ip", "-n", ns, "link", "set", ns_if, "up")
        sh("ip", "-n", ns, "link", "set", "lo", "up")
        sh("ip", "-n", ns, "route", "add", "default", "via", gateway)
        sh("ip", "route", "add", f"{private}/32", "via", address)
        server = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-m", "http.server", "--bind", "0.0.0.0",
                                   str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection((address, port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "the outside server did not start"
                time.sleep(0.05)
        yield address, private, port
    finally:
        if server:
            server.kill()
            server.wait()
        subprocess.run(["ip", "route", "del", f"{private}/32"], capture_output=True)
        subprocess.run(["ip", "link", "del", host_if], capture_output=True)
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)


@pytest.fixture
def worker_address_server():
    """A server on every address of the worker (as a web app on 0.0.0.0 would be)."""
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "http.server", "--bind", "0.0.0.0", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    address = next(a for a in network.worker_addresses() if ":" not in a and not a.startswith(("127.", "198.51.100.")))
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection((address, port), timeout=1).close()
            break
        except OSError:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    yield address, port
    server.kill()
    server.wait()


@pytest.fixture
def probe(workspace, cast, settings, cache_root, live_server, outside, worker_address_server):
    address, private, port = outside
    web = urllib.parse.urlsplit(live_server.url)
    targets = {
        "postgresql": ["127.0.0.1", 5432],
        "web app": [web.hostname, web.port],
        "worker address": list(worker_address_server),
        "metadata": ["169.254.169.254", 80],
        "private": [private, port],
        "outside": [address, port],
    }
    for name, (host, port) in targets.items():  # all of them answer from the worker itself
        if name != "metadata":
            socket.create_connection((host, port), timeout=3).close()

    def run(**volumes_settings):
        settings.VOLUMES = {**settings.VOLUMES, "CACHE_DIR": cache_root, **volumes_settings}
        job = job_run(job_submit(workspace, cast["owner"], "python", PROBE, {"targets": targets}, enqueue=False).pk)
        assert job.status == "success", job.log
        return job.result

    run.private = private
    return run


@pytest.mark.django_db(transaction=True)
def test_by_default_a_sandboxed_job_reaches_nothing(probe):
    results = probe()
    assert "connected" not in results.values(), results
    assert results["postgresql"] == "ECONNREFUSED"  # the sandbox's own loopback, where nothing listens
    assert results["outside"] == "ENETUNREACH"


@pytest.mark.django_db(transaction=True)
def test_with_internet_egress_only_the_outside_address_is_reachable(probe):
    results = probe(SANDBOX_NETWORK="internet")
    assert results.pop("outside") == "connected"
    assert "connected" not in results.values(), results
    assert "timeout" not in results.values(), results  # refused at once, not left hanging


@pytest.mark.django_db(transaction=True)
def test_the_operator_can_allow_a_private_network(probe):
    results = probe(SANDBOX_NETWORK="internet", SANDBOX_ALLOW_NETWORKS=[f"{probe.private}/32"])
    assert results["private"] == results["outside"] == "connected"
    assert {results[name] for name in ("postgresql", "web app", "worker address", "metadata")} & {"connected"} == set()


def test_the_ruleset_refuses_the_special_ranges_and_the_workers_addresses():
    rules = network.nft_rules(network.parse_networks(["10.1.0.0/16"]), ["192.0.2.2"], ["10.255.255.53"])
    assert "ip daddr 10.1.0.0/16 accept" in rules
    assert "ip daddr 10.255.255.53/32 meta l4proto { tcp, udp } th dport 53 accept" in rules
    for blocked in ("127.0.0.0/8", "169.254.0.0/16", "10.0.0.0/8", "fc00::/7", "192.0.2.2/32"):
        assert f"daddr {blocked} reject" in rules
    assert rules.index("10.1.0.0/16 accept") < rules.index("10.0.0.0/8 meta l4proto tcp reject")
