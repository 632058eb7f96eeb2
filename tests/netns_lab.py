"""Test hosts in network namespaces: several "machines" on one bridge, each with its own IP.

Only for tests, run as root. Every name carries a random tag so parallel runs never clash,
and ``close()`` removes everything that was made.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

NETNS_ETC = Path("/etc/netns")  # 'ip netns exec NS' bind-mounts /etc/netns/NS/* over /etc/*


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check)


def netns_unavailable() -> str | None:
    """Why namespaces cannot be made here, or None when they can."""
    if os.geteuid() != 0:
        return "network-namespace tests need root (CI runs as root)"
    if shutil.which("ip") is None:
        return "iproute2 ('ip') is not installed"
    probe = f"emoprobe{os.getpid() % 10000}"
    made = _ip("netns", "add", probe, check=False)
    if made.returncode != 0:
        return f"cannot create network namespaces: {made.stderr.strip()}"
    _ip("netns", "del", probe, check=False)
    return None


def _subnets_in_use() -> set[int]:
    """The n of every 10.213.<n>.x address on this host's interfaces now."""
    out = _ip("-o", "-4", "addr", "show", check=False).stdout
    return {int(word.split(".")[2]) for word in out.split() if word.startswith("10.213.") and word.count(".") == 3}


def _pick_subnet() -> int:
    """A free n in 100-199 for 10.213.<n>.0/24. Under pytest-xdist worker gwK draws from its own
    block of 12, so two workers never open labs on the same subnet; labs of other runs on this
    host are avoided by skipping subnets already on an interface."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if worker.startswith("gw") and worker[2:].isdigit():
        start = 100 + (int(worker[2:]) % 8) * 12
        candidates = list(range(start, start + 12))
    else:
        candidates = list(range(100, 200))
    used = _subnets_in_use()
    free = [n for n in candidates if n not in used] or candidates
    return free[int.from_bytes(os.urandom(2), "big") % len(free)]


@dataclass
class NetnsLab:
    """A bridge on 10.213.<n>.0/24 with the root namespace at .1 and host i at .(10+i)."""

    hosts: int
    tag: str = field(default_factory=lambda: os.urandom(2).hex())
    subnet: int = field(default_factory=_pick_subnet)
    _made: list[str] = field(default_factory=list)

    @property
    def bridge(self) -> str:
        return f"emb{self.tag}"

    def ns(self, i: int) -> str:
        """Namespace name of host ``i``."""
        return f"emo{self.tag}h{i}"

    def veth(self, i: int) -> str:
        """Root-side end of host ``i``'s cable."""
        return f"emv{self.tag}{i}"

    def ip(self, i: int) -> str:
        """Address of host ``i``."""
        return f"10.213.{self.subnet}.{10 + i}"

    def host_name(self, i: int) -> str:
        """Name of host ``i`` in every host's /etc/hosts."""
        return f"kafka-{i}"

    def _write_hosts_file(self, ns: str) -> None:
        # A SASL login makes the broker look up its own listen address; without an answer in
        # /etc/hosts that waits for a DNS server the lab cannot reach (10 s, longer than a client waits).
        folder = NETNS_ETC / ns
        folder.mkdir(parents=True, exist_ok=True)
        lines = ["127.0.0.1 localhost", *(f"{self.ip(i)} {self.host_name(i)}" for i in range(self.hosts))]
        (folder / "hosts").write_text("\n".join(lines) + "\n")

    def open(self) -> "NetnsLab":
        """Create the bridge and the hosts (each with an /etc/hosts naming all of them)."""
        _ip("link", "add", self.bridge, "type", "bridge")
        self._made.append("bridge")
        _ip("addr", "add", f"10.213.{self.subnet}.1/24", "dev", self.bridge)
        _ip("link", "set", self.bridge, "up")
        for i in range(self.hosts):
            ns = self.ns(i)
            _ip("netns", "add", ns)
            self._made.append(ns)
            self._write_hosts_file(ns)
            _ip("link", "add", self.veth(i), "type", "veth", "peer", "name", "eth0", "netns", ns)
            _ip("link", "set", self.veth(i), "master", self.bridge)
            _ip("link", "set", self.veth(i), "up")
            _ip("-n", ns, "addr", "add", f"{self.ip(i)}/24", "dev", "eth0")
            _ip("-n", ns, "link", "set", "eth0", "up")
            _ip("-n", ns, "link", "set", "lo", "up")
            _ip("-n", ns, "route", "add", "default", "via", f"10.213.{self.subnet}.1")
        return self

    def cmd(self, i: int, argv: list[str]) -> list[str]:
        """``argv`` wrapped to run inside host ``i``."""
        return ["ip", "netns", "exec", self.ns(i), *argv]

    def cut(self, i: int) -> None:
        """Unplug host ``i``: its cable goes down, nothing reaches it or leaves it."""
        _ip("link", "set", self.veth(i), "down")

    def heal(self, i: int) -> None:
        """Plug host ``i`` back in."""
        _ip("link", "set", self.veth(i), "up")

    def close(self) -> None:
        """Remove every namespace, cable and the bridge."""
        for i in range(self.hosts):
            _ip("link", "del", self.veth(i), check=False)
            _ip("netns", "del", self.ns(i), check=False)
            shutil.rmtree(NETNS_ETC / self.ns(i), ignore_errors=True)
        _ip("link", "del", self.bridge, check=False)
