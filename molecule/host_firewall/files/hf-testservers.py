"""Test servers for the host_firewall scenario.

Usage: hf-testservers.py IPV4 IPV6
TCP on [::]:9001 (every address), [::]:8080 (the stand-in proxy) and [::]:9005
(the opted-in loopback port): each answers "hello" and closes. UDP echo on
[::]:9003. A minimal DNS responder on IPV4:53 and IPV6:53 that answers every
query with NOERROR and no records.
"""
import socket
import sys
import threading


def tcp(port):
    s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.bind(("::", port))
    s.listen(16)
    while True:
        conn = s.accept()[0]
        try:
            conn.sendall(b"hello\n")
        finally:
            conn.close()


def udp_echo(family, address, port, reply=None):
    s = socket.socket(family, socket.SOCK_DGRAM)
    if family == socket.AF_INET6 and address == "::":
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.bind((address, port))
    while True:
        data, peer = s.recvfrom(4096)
        s.sendto(reply(data) if reply else data, peer)


def dns_answer(query):
    # Same id and question, QR set, RD/RA, NOERROR, no answers.
    return query[:2] + b"\x81\x80" + query[4:6] + b"\x00\x00\x00\x00\x00\x00" + query[12:]


def main():
    ipv4, ipv6 = sys.argv[1], sys.argv[2]
    jobs = [(tcp, (9001,)), (tcp, (8080,)), (tcp, (9005,)),
            (udp_echo, (socket.AF_INET6, "::", 9003)),
            (udp_echo, (socket.AF_INET, ipv4, 53, dns_answer)),
            (udp_echo, (socket.AF_INET6, ipv6, 53, dns_answer))]
    threads = [threading.Thread(target=f, args=a, daemon=True) for f, a in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


if __name__ == "__main__":
    main()
