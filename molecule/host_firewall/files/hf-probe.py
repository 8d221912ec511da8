"""One network attempt for the host_firewall verifier; exit 0 if it got an answer.

hf-probe.py tcp ADDRESS PORT     connect and read the greeting
hf-probe.py udp ADDRESS PORT     send a datagram and wait for the echo
hf-probe.py varlink              ask systemd-resolved's varlink socket to resolve localhost
Timeouts are short: a dropped packet shows as a timeout or EPERM.
"""
import json
import socket
import sys


def main():
    kind = sys.argv[1]
    try:
        if kind == "tcp":
            s = socket.create_connection((sys.argv[2], int(sys.argv[3])), timeout=2)
            ok = s.recv(16).startswith(b"hello")
        elif kind == "udp":
            family = socket.AF_INET6 if ":" in sys.argv[2] else socket.AF_INET
            s = socket.socket(family, socket.SOCK_DGRAM)
            s.settimeout(2)
            s.sendto(b"ping", (sys.argv[2], int(sys.argv[3])))
            ok = s.recv(16) == b"ping"
        elif kind == "varlink":
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(5)
            s.connect("/run/systemd/resolve/io.systemd.Resolve")
            call = {"method": "io.systemd.Resolve.ResolveHostname", "parameters": {"name": "localhost"}}
            s.sendall(json.dumps(call).encode() + b"\0")
            ok = b"addresses" in s.recv(4096)
        else:
            sys.exit("unknown probe " + kind)
    except OSError as exc:
        print("%s: %s" % (type(exc).__name__, exc))
        sys.exit(1)
    print("ok" if ok else "unexpected answer")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
