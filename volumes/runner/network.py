"""The sandbox's network: none by default, or filtered egress to the internet.

`none` (default): nsjail's own network namespace with only a loopback interface inside. The job
reaches nothing outside the sandbox: not the worker's loopback (PostgreSQL, Redis, the web app),
not its other addresses, not the internet. 127.0.0.1 inside is the sandbox's own loopback.

`internet`: a network namespace made per job (`ip netns add`), connected to the outside by
pasta (user-mode networking from the `passt` package: the job's connections become ordinary
sockets of the worker) and filtered inside by nftables before any packet reaches pasta. Refused
(TCP reset / ICMP unreachable at once): loopback, link-local (cloud metadata 169.254.169.254),
the RFC 1918 private ranges, carrier-grade NAT, multicast and other special ranges of IPv4 and
IPv6 (ULA fc00::/7, fe80::/10, IPv4-mapped), and every address of the worker itself, except the
networks the operator lists (`allow`). pasta never maps the gateway to the worker's loopback
(`--no-map-gw`) and forwards no ports in either direction, so the worker's loopback stays out of
reach even when listed. DNS (port 53 only) to the resolvers in the worker's /etc/resolv.conf is
allowed, so names resolve even when the resolver has a private address. Needs a root worker, `ip`
(iproute2), `nft` (nftables) and `pasta` (passt); without them a job fails, never falling back
to another network mode.

Not enforced: what a job sends to allowed addresses (bandwidth, ports, protocols), DNS tunnelling
through the resolver, and addresses on the worker's LAN that are public (only the worker's own
addresses and the special ranges are refused).
"""
from __future__ import annotations

import ipaddress
import json
import os
import shutil
import subprocess
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from ..exceptions import VolumesError

MODES = ("none", "internet")
NETNS_DIR = Path("/run/netns")
PREFIX = "volumes-job-"

# Never reachable from a sandbox with internet egress unless listed by the operator.
BLOCKED = (
    "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
    "192.0.0.0/24", "192.168.0.0/16", "198.18.0.0/15", "224.0.0.0/3",
    "::/127", "::ffff:0:0/96", "64:ff9b::/96", "fc00::/7", "fe80::/10", "ff00::/8",
)


class NetworkUnavailable(VolumesError):
    """The sandbox network the operator chose cannot be set up on this worker."""

    code = "sandbox_network_unavailable"
    status = 503


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise NetworkUnavailable(
            f"VOLUMES_SANDBOX_NETWORK is {mode!r}; use 'none' (no network, the default) or 'internet' "
            "(internet egress without the worker's loopback, link-local or private addresses)"
        )
    return mode


def parse_networks(values: list[str]) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    networks = []
    for value in values:
        try:
            networks.append(ipaddress.ip_network(value.strip(), strict=False))
        except ValueError as exc:
            raise NetworkUnavailable(
                f"VOLUMES_SANDBOX_ALLOW_NETWORKS: {value!r} is not an address or network (e.g. 10.1.2.3/32)"
            ) from exc
    return networks


def _tool(name: str) -> str:
    found = shutil.which(name) or next((str(p) for p in (Path("/usr/sbin") / name, Path("/sbin") / name)
                                        if p.is_file()), None)
    if not found:
        package = {"pasta": "passt", "nft": "nftables", "ip": "iproute2"}[name]
        raise NetworkUnavailable(
            f"VOLUMES_SANDBOX_NETWORK=internet needs `{name}` on the worker (Debian package {package}); "
            "the job was not run"
        )
    return found


def _run(argv: list[str], stdin: str | None = None) -> None:
    done = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        raise NetworkUnavailable(f"setting up the sandbox network failed: {' '.join(argv[:4])}...: "
                                 f"{done.stderr.strip() or done.returncode}")


def worker_addresses() -> list[str]:
    done = subprocess.run([_tool("ip"), "-j", "addr"], capture_output=True, text=True, timeout=30)
    addresses = []
    for link in json.loads(done.stdout or "[]"):
        for info in link.get("addr_info", []):
            if info.get("local"):
                addresses.append(info["local"].split("%")[0])
    return addresses


def resolvers() -> list[str]:
    found = []
    try:
        for line in Path("/etc/resolv.conf").read_text().splitlines():
            parts = line.split()
            if len(parts) >= 2 and parts[0] == "nameserver":
                try:
                    found.append(str(ipaddress.ip_address(parts[1].split("%")[0])))
                except ValueError:
                    pass
    except OSError:
        pass
    return found


def nft_rules(allow: list, blocked_addresses: list[str], dns: list[str]) -> str:
    """The nftables ruleset of one sandbox namespace: accept loopback, allowed networks and DNS; refuse the rest
    of the special ranges and the worker's addresses; accept everything else (the internet)."""

    def match(network) -> str:
        network = ipaddress.ip_network(network, strict=False)
        return f"{'ip' if network.version == 4 else 'ip6'} daddr {network}"

    lines = ['oifname "lo" accept']
    lines += [f"{match(network)} accept" for network in allow]
    lines += [f"{match(server)} meta l4proto {{ tcp, udp }} th dport 53 accept" for server in dns]
    lines += [f"{match(network)} meta l4proto tcp reject with tcp reset" for network in (*BLOCKED, *blocked_addresses)]
    lines += [f"{match(network)} reject" for network in (*BLOCKED, *blocked_addresses)]
    body = "\n    ".join(lines)
    return (
        "table inet volumes_sandbox {\n"
        "  chain output {\n"
        "    type filter hook output priority 0; policy accept;\n"
        f"    {body}\n"
        "  }\n"
        "}\n"
    )


def _reap_stale() -> None:
    """Delete namespaces left behind by workers that died (named after their pid)."""
    if not NETNS_DIR.is_dir():
        return
    for entry in NETNS_DIR.iterdir():
        if entry.name.startswith(PREFIX):
            pid = entry.name[len(PREFIX):].split("-")[0]
            if pid.isdigit() and not Path("/proc", pid).exists():
                subprocess.run([_tool("ip"), "netns", "del", entry.name], capture_output=True, timeout=30)


def _die_with_parent() -> None:
    import ctypes
    import signal

    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


@contextmanager
def internet_namespace(allow: list[str], log_file: Path) -> Iterator[list[str]]:
    """A network namespace with filtered internet egress; yields the argv prefix that runs a command in it.

    pasta's messages go to `log_file`."""
    if os.geteuid() != 0:
        raise NetworkUnavailable(
            "VOLUMES_SANDBOX_NETWORK=internet needs a worker running as root (it builds a network namespace "
            "and its firewall); the job was not run"
        )
    ip, nft, pasta = _tool("ip"), _tool("nft"), _tool("pasta")
    networks = parse_networks(allow)
    _reap_stale()
    name = f"{PREFIX}{os.getpid()}-{uuid.uuid4().hex[:8]}"
    _run([ip, "netns", "add", name])
    process = None
    log = open(log_file, "ab")
    try:
        _run([ip, "-n", name, "link", "set", "lo", "up"])
        # The firewall goes in before the interface exists, so no packet ever leaves unfiltered.
        _run([ip, "netns", "exec", name, nft, "-f", "-"],
             stdin=nft_rules(networks, worker_addresses(), resolvers()))
        process = subprocess.Popen(
            [pasta, "--runas", "0", "--netns", str(NETNS_DIR / name), "--config-net", "--no-map-gw",
             "-t", "none", "-u", "none", "-T", "none", "-U", "none", "--foreground", "--quiet"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log, preexec_fn=_die_with_parent,
        )
        deadline = time.monotonic() + 10
        while True:
            done = subprocess.run([ip, "-n", name, "-j", "route", "show", "default"], capture_output=True,
                                  text=True, timeout=30)
            if json.loads(done.stdout or "[]"):
                break
            if process.poll() is not None or time.monotonic() > deadline:
                log.flush()
                lines = [line for line in log_file.read_text(errors="replace").splitlines() if "syslog" not in line]
                error = " ".join(lines)[-300:] if process.poll() is not None else "timed out"
                raise NetworkUnavailable(f"pasta did not connect the sandbox to the network: {error}")
            time.sleep(0.02)
        yield [ip, "netns", "exec", name]
    finally:
        if process is not None:
            process.kill()
            process.wait()
        log.close()
        subprocess.run([ip, "netns", "del", name], capture_output=True, timeout=30)
