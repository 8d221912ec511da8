"""Network attempts for the host_firewall verifier; exit 0 if it got an answer.

hf-probe.py tcp ADDRESS PORT     connect and read the greeting
hf-probe.py udp ADDRESS PORT     send a datagram and wait for the echo
hf-probe.py varlink              ask systemd-resolved's varlink socket to resolve localhost
hf-probe.py --each TARGET...     run several, each TARGET one quoted attempt ("tcp ::1 9001"),
                                 all at once, and print {TARGET: "ok" or what went wrong} as JSON
Timeouts are short: a dropped packet shows as a timeout or EPERM. --each runs the
attempts in parallel so that the blocked ones wait out their timeouts together.
"""
import json
import socket
import sys
from concurrent.futures import ThreadPoolExecutor


def attempt(kind, *args):
    """Return "ok" or what went wrong."""
    try:
        if kind == "tcp":
            with socket.create_connection((args[0], int(args[1])), timeout=2) as s:
                ok = s.recv(16).startswith(b"hello")
        elif kind == "udp":
            family = socket.AF_INET6 if ":" in args[0] else socket.AF_INET
            with socket.socket(family, socket.SOCK_DGRAM) as s:
                s.settimeout(2)
                s.sendto(b"ping", (args[0], int(args[1])))
                ok = s.recv(16) == b"ping"
        elif kind == "varlink":
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.settimeout(5)
                s.connect("/run/systemd/resolve/io.systemd.Resolve")
                call = {"method": "io.systemd.Resolve.ResolveHostname", "parameters": {"name": "localhost"}}
                s.sendall(json.dumps(call).encode() + b"\0")
                ok = b"addresses" in s.recv(4096)
        else:
            return "unknown probe " + kind
    except OSError as exc:
        return "%s: %s" % (type(exc).__name__, exc)
    return "ok" if ok else "unexpected answer"


def main():
    if sys.argv[1] == "--each":
        targets = sys.argv[2:]
        with ThreadPoolExecutor(max_workers=len(targets)) as pool:
            results = pool.map(lambda target: attempt(*target.split()), targets)
        print(json.dumps(dict(zip(targets, results))))
        return
    result = attempt(*sys.argv[1:])
    print(result)
    sys.exit(0 if result == "ok" else 1)


if __name__ == "__main__":
    main()
