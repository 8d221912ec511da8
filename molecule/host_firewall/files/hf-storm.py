"""The reload storm of the host_firewall scenario: is there a moment in which the agent's packets pass?

hf-storm.py receive PORT
    Counts UDP datagrams and TCP connections on every address (IPv4 and IPv6) on PORT until
    SIGTERM, then prints {"udp": N, "tcp": N} as JSON.
hf-storm.py send PORT ADDRESS...
    Sends UDP datagrams to each ADDRESS on PORT without pause, and every 20 rounds tries a TCP
    connection, ignoring every error, until SIGTERM; then prints what it tried and what went out:
    {"udp_attempts": N, "udp_sent": N, "tcp_attempts": N, "tcp_connected": N}.
"""
import json
import selectors
import signal
import socket
import sys

stop = False


def on_term(signum, frame):
    global stop
    stop = True


def receive(port):
    udp = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    tcp = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    for sock in (udp, tcp):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind(("::", port))
    tcp.listen(128)
    counts = {"udp": 0, "tcp": 0}
    sel = selectors.DefaultSelector()
    sel.register(udp, selectors.EVENT_READ, "udp")
    sel.register(tcp, selectors.EVENT_READ, "tcp")
    print("ready", file=sys.stderr, flush=True)
    while not stop:
        for key, dummy in sel.select(timeout=0.2):
            if key.data == "udp":
                udp.recv(2048)
            else:
                key.fileobj.accept()[0].close()
            counts[key.data] += 1
    print(json.dumps(counts))


def send(port, addresses):
    # UDP without pause: a dropped datagram fails at once (EPERM). A TCP connection attempt
    # every 20 rounds, since a dropped SYN makes connect() wait for its timeout.
    counts = {"udp_attempts": 0, "udp_sent": 0, "tcp_attempts": 0, "tcp_connected": 0}
    rounds = 0
    while not stop:
        rounds += 1
        for address in addresses:
            family = socket.AF_INET6 if ":" in address else socket.AF_INET
            counts["udp_attempts"] += 1
            with socket.socket(family, socket.SOCK_DGRAM) as udp:
                try:
                    udp.sendto(b"storm", (address, port))
                    counts["udp_sent"] += 1
                except OSError:
                    pass
            if rounds % 20:
                continue
            counts["tcp_attempts"] += 1
            with socket.socket(family, socket.SOCK_STREAM) as tcp:
                tcp.settimeout(0.05)
                try:
                    tcp.connect((address, port))
                    counts["tcp_connected"] += 1
                except OSError:
                    pass
    print(json.dumps(counts))


def main():
    signal.signal(signal.SIGTERM, on_term)
    if sys.argv[1] == "receive":
        receive(int(sys.argv[2]))
    else:
        send(int(sys.argv[2]), sys.argv[3:])


if __name__ == "__main__":
    main()
