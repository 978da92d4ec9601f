"""Several hosts on one machine: network namespaces joined by bridges, for tests of what
crosses a network (a process per host, real sockets, partitions with ``ip link``).

Each :class:`Net` is a Linux bridge with a /24; each :class:`Host` is a network
namespace with one veth pair per net it joins (``eth0``, ``eth1``, ... inside). The
test process stays in the root namespace and has an address on every net, so it
reaches every host. :meth:`Host.cut` takes a host's link down (its side and the
bridge's: packets are lost, as when a cable is pulled); :meth:`Host.mend` brings it back.

Needs root and ``iproute2``; :func:`unavailable` says why not, for ``pytest.skip``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path


def unavailable() -> str | None:
    """Why namespaces cannot be made here, or None."""
    if os.geteuid() != 0:
        return "needs root (network namespaces)"
    if shutil.which("ip") is None:
        return "needs iproute2 (`apt-get install iproute2`)"
    probe = f"llmship-probe-{secrets.token_hex(3)}"
    made = subprocess.run(
        ["ip", "netns", "add", probe], check=False, capture_output=True, text=True
    )
    if made.returncode != 0:
        return f"cannot make a network namespace: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], check=False, capture_output=True)
    return None


def ip(*args: str, ns: str | None = None) -> None:
    """Run ``ip ARGS`` (in namespace ``ns``); raise with its message when it fails."""
    argv = ["ip", "netns", "exec", ns, "ip", *args] if ns else ["ip", *args]
    done = subprocess.run(argv, check=False, capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {done.stderr.strip()}")


@dataclass
class Net:
    """A bridge and its /24: the root namespace is ``.1``, hosts take ``.2`` onwards."""

    name: str
    bridge: str
    prefix: str
    """``10.X.Y``: addresses are ``10.X.Y.N``."""
    next_host: int = 2

    @property
    def gateway_ip(self) -> str:
        return f"{self.prefix}.1"


@dataclass
class Host:
    """A network namespace: its address on each net, and the veths that join them."""

    name: str
    ns: str
    addrs: dict[str, str] = field(default_factory=dict)
    """net name -> this host's address on it."""
    links: dict[str, str] = field(default_factory=dict)
    """net name -> the veth end on the bridge (the root namespace's side)."""
    inner: dict[str, str] = field(default_factory=dict)
    """net name -> the interface inside the namespace."""

    def ip(self, net: str = "front") -> str:
        return self.addrs[net]

    def argv(self, command: Sequence[str]) -> list[str]:
        """``command`` run inside this host."""
        return ["ip", "netns", "exec", self.ns, *command]

    def cut(self, *nets: str) -> None:
        """Take this host's links down at the bridge (all of them, or those to ``nets``):
        from then on its packets are lost on the way, as when a cable is pulled."""
        for net in nets or tuple(self.links):
            ip("link", "set", self.links[net], "down")

    def mend(self, *nets: str) -> None:
        """Bring the links back up."""
        for net in nets or tuple(self.links):
            ip("link", "set", self.links[net], "up")


class Hosts:
    """Bridges and namespaces made for one test; :meth:`close` removes every one."""

    def __init__(self, nets: Sequence[str] = ("front",)):
        self.tag = secrets.token_hex(2)
        second = 100 + secrets.randbelow(150)
        self.nets: dict[str, Net] = {}
        self.hosts: dict[str, Host] = {}
        self._veths = 0
        try:
            for i, name in enumerate(nets):
                net = Net(name, f"lb{self.tag}{i}", f"10.{second}.{i}")
                ip("link", "add", net.bridge, "type", "bridge")
                ip("addr", "add", f"{net.gateway_ip}/24", "dev", net.bridge)
                ip("link", "set", net.bridge, "up")
                self.nets[name] = net
        except BaseException:
            self.close()
            raise

    def add(self, name: str, nets: Sequence[str] = ("front",)) -> Host:
        """A new host joined to ``nets`` (its first net is its default route)."""
        host = Host(name, f"llmship-{self.tag}-{name}")
        self.hosts[name] = host
        ip("netns", "add", host.ns)
        ip("link", "set", "lo", "up", ns=host.ns)
        for i, net_name in enumerate(nets):
            net = self.nets[net_name]
            self._veths += 1
            outer, inner = f"vo{self.tag}{self._veths}", f"vi{self.tag}{self._veths}"
            ip("link", "add", outer, "type", "veth", "peer", "name", inner)
            ip("link", "set", inner, "netns", host.ns)
            ip("link", "set", inner, "name", f"eth{i}", ns=host.ns)
            ip("link", "set", outer, "master", net.bridge)
            ip("link", "set", outer, "up")
            addr = f"{net.prefix}.{net.next_host}"
            net.next_host += 1
            ip("addr", "add", f"{addr}/24", "dev", f"eth{i}", ns=host.ns)
            ip("link", "set", f"eth{i}", "up", ns=host.ns)
            host.addrs[net_name], host.links[net_name] = addr, outer
            host.inner[net_name] = f"eth{i}"
        return host

    def close(self) -> None:
        """Kill what still runs in the namespaces, then remove them and the bridges."""
        for host in self.hosts.values():
            pids = subprocess.run(
                ["ip", "netns", "pids", host.ns], check=False, capture_output=True, text=True
            ).stdout.split()
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), 9)
            subprocess.run(["ip", "netns", "del", host.ns], check=False, capture_output=True)
        for net in self.nets.values():
            subprocess.run(["ip", "link", "del", net.bridge], check=False, capture_output=True)

    def __enter__(self) -> Hosts:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def netem_works(link: str) -> bool:
    """Whether ``tc netem`` can delay ``link`` (the kernel may lack sch_netem)."""
    done = subprocess.run(
        ["tc", "qdisc", "add", "dev", link, "root", "netem", "delay", "0ms"],
        check=False,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        return False
    subprocess.run(["tc", "qdisc", "del", "dev", link, "root"], check=False, capture_output=True)
    return True


def set_delay(link: str, ms: float) -> None:
    """Delay every packet leaving ``link`` by ``ms`` (0: remove the delay)."""
    if ms <= 0:
        subprocess.run(
            ["tc", "qdisc", "del", "dev", link, "root"], check=False, capture_output=True
        )
        return
    subprocess.run(
        ["tc", "qdisc", "replace", "dev", link, "root", "netem", "delay", f"{ms:g}ms"],
        check=True,
        capture_output=True,
    )


class DelayRelay:
    """A TCP relay that holds every chunk for ``delay`` seconds before passing it on,
    in both directions, keeping order: the latency of a slow link, where the kernel
    has no ``tc netem``. Listens on ``(host, port)`` and forwards to ``target``."""

    def __init__(self, listen: tuple[str, int], target: tuple[str, int]):
        self.listen = listen
        self.target = target
        self.delay = 0.0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="delay-relay", daemon=True)
        self._server: asyncio.base_events.Server | None = None

    def __enter__(self) -> DelayRelay:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the relay did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        async def stop() -> None:
            if self._server is not None:
                self._server.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self._loop.stop()

        asyncio.run_coroutine_threadsafe(stop(), self._loop)
        self._thread.join(10)
        if not self._thread.is_alive():
            self._loop.close()

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(
            asyncio.start_server(self._serve, *self.listen)
        )
        self._ready.set()
        self._loop.run_forever()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        try:
            await asyncio.gather(
                self._pipe(reader, up_writer),
                self._pipe(up_reader, writer),
                return_exceptions=True,
            )
        except asyncio.CancelledError:  # the relay is closing
            writer.close()
            up_writer.close()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def send() -> None:
            while True:
                due, data = await queue.get()
                if not data:
                    break
                wait = due - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                writer.write(data)
                await writer.drain()
            writer.close()

        sender = asyncio.ensure_future(send())
        try:
            while True:
                data = await reader.read(65536)
                await queue.put((time.monotonic() + self.delay, data))
                if not data:
                    break
            await sender
        except (OSError, asyncio.CancelledError):
            sender.cancel()
            writer.close()


@contextlib.contextmanager
def postgres_on(host: Host, *, net: str = "db") -> Iterator[str]:
    """A PostgreSQL server inside ``host``, listening on its ``net`` address (port 5432,
    trust from everywhere), with one database ``llmship``; yields the SQLAlchemy URL.
    Its files are in a temporary directory the server's user can reach, removed after."""
    from _postgres import SERVER_USER, _as_server_user, _run, find_bindir

    bindir = find_bindir()
    workdir = Path(tempfile.mkdtemp(prefix="llmship-pg-"))
    if os.geteuid() == 0:
        import pwd

        entry = pwd.getpwnam(SERVER_USER)
        os.chown(workdir, entry.pw_uid, entry.pw_gid)
    data, sockets = workdir / "data", workdir / "sock"
    _run(_as_server_user(["mkdir", "-p", str(sockets)]))
    initdb = [str(bindir / "initdb"), "-D", str(data), "-U", SERVER_USER, "-A", "trust"]
    _run(_as_server_user([*initdb, "-E", "UTF8", "--no-sync"]))
    hba = "host all all 0.0.0.0/0 trust\n"
    _run(_as_server_user(["sh", "-c", f"echo '{hba.strip()}' >> {data}/pg_hba.conf"]))
    addr = host.ip(net)
    log = (workdir / "server.log").open("wb")
    settings = {
        "listen_addresses": addr,
        "fsync": "off",
        "synchronous_commit": "off",
        "full_page_writes": "off",
        "max_connections": "200",
    }
    options = [arg for key, value in settings.items() for arg in ("-c", f"{key}={value}")]
    server = [str(bindir / "postgres"), "-D", str(data), "-p", "5432", "-k", str(sockets)]
    argv = host.argv(_as_server_user([*server, *options]))
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
    try:
        import psycopg

        deadline = time.monotonic() + 60
        while True:
            try:
                with psycopg.connect(
                    f"host={addr} port=5432 user={SERVER_USER} dbname=postgres",
                    autocommit=True,
                    connect_timeout=2,
                ) as conn:
                    conn.execute("CREATE DATABASE llmship")
                break
            except psycopg.OperationalError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        "PostgreSQL did not start:\n"
                        + (workdir / "server.log").read_text(errors="replace")[-2000:]
                    ) from None
                time.sleep(0.2)
        yield f"postgresql+psycopg://{SERVER_USER}@{addr}:5432/llmship"
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
        shutil.rmtree(workdir, ignore_errors=True)
