"""Write the host's extra CA certificates: those in the host bundle that
Debian's ca-certificates package does not ship.

Package registries here are reached through a TLS-intercepting path, so the
test images must trust the same extra CAs as the host. Usage:

    extra_cas.py OUT_DIR [HOST_BUNDLE] [DEBIAN_CA_DIR]

Each extra certificate becomes OUT_DIR/host-extra-NN.crt; the count is printed.
"""
import glob
import os
import re
import sys

PEM = re.compile(
    r"-----BEGIN CERTIFICATE-----\s*(.+?)\s*-----END CERTIFICATE-----", re.S
)


def bodies(text):
    """Return the base64 bodies of every PEM certificate, whitespace removed."""
    return ["".join(m.group(1).split()) for m in PEM.finditer(text)]


def main(argv):
    out = argv[1]
    bundle = argv[2] if len(argv) > 2 else "/etc/ssl/certs/ca-certificates.crt"
    debian = argv[3] if len(argv) > 3 else "/usr/share/ca-certificates/mozilla"
    known = set()
    for path in glob.glob(os.path.join(debian, "*.crt")):
        with open(path, encoding="ascii", errors="replace") as fh:
            known.update(bodies(fh.read()))
    with open(bundle, encoding="ascii", errors="replace") as fh:
        extra = [b for b in bodies(fh.read()) if b not in known]
    os.makedirs(out, exist_ok=True)
    for n, body in enumerate(sorted(set(extra))):
        lines = [body[i:i + 64] for i in range(0, len(body), 64)]
        pem = "-----BEGIN CERTIFICATE-----\n%s\n-----END CERTIFICATE-----\n" % "\n".join(lines)
        with open(os.path.join(out, "host-extra-%02d.crt" % n), "w", encoding="ascii") as fh:
            fh.write(pem)
    print(len(set(extra)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
