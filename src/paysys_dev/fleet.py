"""N instances of every service on one machine, each service behind HAProxy.

With N = 1 the processes listen on their own ports, and a warm spare per service takes
over when one dies (cli.Spares). With N > 1, HAProxy listens on each service's port
and balances over that service's N instances. Instance i listens on the service's port
plus 100 * (i + 1), on 127.0.0.1 only. HAProxy checks each instance's /ready every
second and takes a failed one out within about 2 s.

The balancer retries only what is safe to send twice:
- a connection that failed before the request was sent, always;
- otherwise (no answer, a reset, a timeout) only a GET or HEAD, or a write to
  transactions that carries an Idempotency-Key: it answers a repeat with the first
  outcome. A key elsewhere buys no retry (a repeated /users/refresh is a token reuse).
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

from paysys.kit.settings import RELAY_PORT_OFFSET, RELAYED

ROOT = Path(__file__).resolve().parents[2]

INSTANCE_PORT_STEP = 100


def instance_port(port: int, index: int) -> int:
    return port + INSTANCE_PORT_STEP * (index + 1)


# What HAProxy itself answers (no instance up, an instance failed mid-answer, too slow)
# is a problem+json like every other error of the API: 503 SERVICE_UNAVAILABLE.
PROBLEM_503 = (
    '{"type":"https://paysys.dev/problems/service-unavailable","title":"Service Unavailable",'
    '"status":503,"detail":"No instance of the service could answer; retry later.",'
    '"code":"SERVICE_UNAVAILABLE"}'
)


def errorfile(run_dir: Path) -> Path:
    path = run_dir / "haproxy-503.http"
    body = PROBLEM_503.encode()
    path.write_bytes(
        b"HTTP/1.1 503 Service Unavailable\r\n"
        b"Content-Type: application/problem+json\r\n"
        b"Cache-Control: no-store\r\nRetry-After: 1\r\nConnection: close\r\n"
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    return path


def haproxy_config(
    ports: Mapping[str, int], instances: int, errors: Path, public: str = "0.0.0.0"
) -> str:
    """The whole configuration: one frontend and one backend per service."""
    lines = [
        "global",
        "    maxconn 4000",  # within the usual open-file limit (2 descriptors each)
        "    log stderr format raw local0 warning",
        "",
        "defaults",
        "    mode http",
        "    log global",
        "    option httplog",
        "    option http-keep-alive",
        "    timeout connect 1s",
        "    timeout client 65s",
        "    timeout server 65s",
        "    # an idle client connection is kept longer than our clients' pools keep it",
        "    # (PAYSYS_HTTP_CLIENT_IDLE_SECONDS, 30 s): they let go of it first, never race",
        "    # its close (kit.settings)",
        "    timeout http-keep-alive 60s",
        "    timeout http-request 10s",
        "    timeout queue 5s",
        "    # on a failure, try another instance (at most twice)",
        "    retries 2",
        "    option redispatch 1",
        "    retry-on conn-failure empty-response response-timeout",
        *[f"    errorfile {status} {errors}" for status in (502, 503, 504)],
        "",
    ]
    for service, port in ports.items():
        bind = public if service == "gateway" else "127.0.0.1"
        edge = (
            # The public edge says who its client was, replacing whatever the client
            # wrote: the gateway trusts exactly this one hop (PAYSYS_TRUSTED_PROXY_HOPS).
            ["    http-request del-header X-Forwarded-For", "    option forwardfor"]
            if service == "gateway"
            else []
        )
        lines += [
            f"frontend {service}",
            f"    bind {bind}:{port}",
            *edge,
            f"    default_backend {service}",
            "",
            f"backend {service}",
            "    balance leastconn",
            "    option httpchk GET /ready",
            "    http-check expect status 200",
            "    default-server inter 1s fastinter 250ms downinter 500ms fall 2 rise 1",
            "    # a request that failed after it was sent is retried only when a repeat is",
            "    # harmless: a read, or a write the service deduplicates by its",
            "    # Idempotency-Key (transactions' alone; a key on any other route, such as",
            "    # /users/refresh, where a repeat is a token reuse, buys no retry)",
            "    acl safe_method method GET HEAD",
            "    acl keyed req.hdr(Idempotency-Key) -m found",
            "    acl deduplicated path_beg /transactions/",
            "    http-request disable-l7-retry unless safe_method || keyed deduplicated",
            "    option http-buffer-request",
            *[
                f"    server {service}-{i} 127.0.0.1:{instance_port(port, i)} check"
                for i in range(instances)
            ],
            "",
        ]
    return "\n".join(lines)


def start_haproxy(
    ports: Mapping[str, int], instances: int, run_dir: Path, log_dir: Path
) -> subprocess.Popen[bytes]:
    """Writes its configuration (and error page) under run_dir, checks it, starts it."""
    binary = shutil.which("haproxy") or "/usr/sbin/haproxy"
    run_dir.mkdir(parents=True, exist_ok=True)
    cfg = run_dir / "haproxy.cfg"
    cfg.write_text(haproxy_config(ports, instances, errorfile(run_dir)))
    subprocess.run([binary, "-c", "-q", "-f", str(cfg)], check=True)
    log_dir.mkdir(parents=True, exist_ok=True)
    log = (log_dir / "haproxy.log").open("ab")
    # -W: master-worker, -db: stay in the foreground (the supervisor owns it)
    return subprocess.Popen([binary, "-W", "-db", "-f", str(cfg)], stdout=log, stderr=log)


def spawn_relay(
    service: str, env: Mapping[str, str], log_dir: Path, port: int, log_name: str | None = None
) -> subprocess.Popen[bytes]:
    """`paysys relay SERVICE` on `port`, with the service's environment."""
    log_dir.mkdir(parents=True, exist_ok=True)
    log = (log_dir / f"{log_name or service + '-relay'}.log").open("ab")
    return subprocess.Popen(
        [sys.executable, "-m", "paysys.cli", "relay", service],
        env={**env, "PAYSYS_LISTEN_PORT": str(port)},
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=ROOT,
    )


def spawn_service(
    service: str,
    env: Mapping[str, str],
    log_dir: Path,
    standby: bool = False,
    log_name: str | None = None,
    app: str | None = None,
) -> subprocess.Popen[bytes]:
    log_dir.mkdir(parents=True, exist_ok=True)
    log = (log_dir / f"{log_name or service}.log").open("ab")
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "paysys.cli",
            "serve",
            service,
            *(["--standby"] * standby),
            *(["--app", app] if app else []),
        ],
        env=dict(env),
        stdin=subprocess.PIPE if standby else None,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=ROOT,
    )


class Spares:
    """One warm spare per service (`paysys serve --standby`): when a process dies, its
    spare starts serving at once instead of a new process spending seconds on imports,
    and a new spare warms up behind it. It costs one idle interpreter per service."""

    def __init__(self, envs: Mapping[str, Mapping[str, str]], log_dir: Path) -> None:
        self.envs, self.log_dir = envs, log_dir
        self.spares: dict[str, subprocess.Popen[bytes]] = {}

    def warm(self, service: str) -> None:
        self.spares[service] = spawn_service(
            service, self.envs[service], self.log_dir, standby=True
        )

    def start(self, service: str) -> subprocess.Popen[bytes]:
        """A serving process: the warm spare if there is a live one, else a new one."""
        spare = self.spares.pop(service, None)
        proc = None
        if spare is not None and spare.poll() is None and spare.stdin is not None:
            try:
                spare.stdin.write(b"serve\n")
                spare.stdin.flush()
                proc = spare
            except OSError:
                spare.kill()
        if proc is None:
            proc = spawn_service(service, self.envs[service], self.log_dir)
        self.warm(service)
        return proc

    def stop(self) -> None:
        stop_processes(self.spares)


def stop_processes(procs: Mapping[str, subprocess.Popen[bytes]], grace: float = 15.0) -> None:
    for proc in procs.values():
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace
    for proc in procs.values():
        try:
            proc.wait(max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class Fleet:
    """The serving processes of one stack. With one instance per service: the processes
    on the services' own ports, each with a warm spare. With N: N instances per service
    on their instance ports, behind one HAProxy. Processes are named `wallets` (N = 1)
    or `wallets#0`, `wallets#1`, ... (N > 1)."""

    def __init__(
        self,
        envs: Mapping[str, Mapping[str, str]],
        ports: Mapping[str, int],
        log_dir: Path,
        run_dir: Path,
        instances: int = 1,
        spares: bool = True,
        relays: str = "apart",
    ) -> None:
        # Every service's relays run in processes of their own (kit.relays), as in the
        # chart: what the services' processes spend is what answering requests costs.
        # "inline": inside the services (bench/load.py --relays inline, to compare).
        self.relays = relays
        self.envs = {s: {**env, "PAYSYS_RELAYS": relays} for s, env in envs.items()}
        self.ports, self.log_dir, self.run_dir = ports, log_dir, run_dir
        self.instances = instances
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.spares = Spares(self.envs, log_dir) if spares and instances == 1 else None
        self.haproxy: subprocess.Popen[bytes] | None = None

    def names(self, service: str) -> list[str]:
        """A service's processes, or (`wallets-relay`) those of its relays: one beside
        each instance, as the chart's sidecar."""
        if self.instances == 1:
            return [service]
        return [f"{service}#{i}" for i in range(self.instances)]

    def all_names(self) -> list[str]:
        """Every process of the fleet: the services' and their relays'."""
        relays = [f"{s}-relay" for s in self.ports if s in RELAYED and self.relays == "apart"]
        return [n for s in [*self.ports, *relays] for n in self.names(s)]

    def _port(self, name: str) -> int:
        service, _, index = name.partition("#")
        base = service.removesuffix("-relay")
        port = self.ports[base] + (RELAY_PORT_OFFSET if service != base else 0)
        return instance_port(port, int(index)) if index else port

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self._port(name)}"

    def _spawn(self, name: str, replacing: bool = False) -> subprocess.Popen[bytes]:
        service, _, index = name.partition("#")
        if service.endswith("-relay"):
            base = service.removesuffix("-relay")
            log_name = f"{service}-{index}" if index else None
            return spawn_relay(base, self.envs[base], self.log_dir, self._port(name), log_name)
        if not index:
            if self.spares and replacing:
                return self.spares.start(service)
            return spawn_service(service, self.envs[service], self.log_dir)
        env = {
            **self.envs[service],
            "PAYSYS_LISTEN_PORT": str(instance_port(self.ports[service], int(index))),
            "PAYSYS_BIND_HOST": "127.0.0.1",  # only HAProxy is reached from outside
        }
        if service == "gateway":  # HAProxy in front: one more trusted hop
            hops = int(env.get("PAYSYS_TRUSTED_PROXY_HOPS") or 0) + 1
            env["PAYSYS_TRUSTED_PROXY_HOPS"] = str(hops)
        return spawn_service(service, env, self.log_dir, log_name=f"{service}-{index}")

    def start(self, *names: str) -> None:
        """Starts these processes (services or instances; all when none is named)."""
        if self.instances > 1 and self.haproxy is None:
            self.haproxy = start_haproxy(self.ports, self.instances, self.run_dir, self.log_dir)
        for name in names or self.all_names():
            self.procs[name] = self._spawn(name)

    def restart(self, name: str) -> None:
        """A process that was killed, started again (by its warm spare where it has one)."""
        self.procs[name] = self._spawn(name, replacing=True)

    def ready_urls(self) -> dict[str, str]:
        return {name: self.url(name) for name in self.procs}

    def kill(self, name: str) -> None:
        proc = self.procs[name]
        proc.kill()
        proc.wait()

    def replace_dead(self) -> list[str]:
        """Starts again whatever has died; the names it restarted."""
        dead = [name for name, proc in self.procs.items() if proc.poll() is not None]
        for name in dead:
            self.restart(name)
        if self.haproxy is not None and self.haproxy.poll() is not None:
            self.haproxy = start_haproxy(self.ports, self.instances, self.run_dir, self.log_dir)
            dead.append("haproxy")
        return dead

    def warm_spares(self) -> None:
        if self.spares:
            for service in self.ports:
                self.spares.warm(service)

    def stop(self) -> None:
        stop_processes(self.procs)
        if self.spares:
            self.spares.stop()
        if self.haproxy is not None:
            stop_processes({"haproxy": self.haproxy})
