"""tests/images/extra_cas.py keeps exactly the host CAs Debian does not ship."""
import importlib.util
import pathlib

HERE = pathlib.Path(__file__).resolve()
SPEC = importlib.util.spec_from_file_location(
    "extra_cas", HERE.parents[2] / "images" / "extra_cas.py")
extra_cas = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(extra_cas)


def pem(body):
    lines = [body[i:i + 64] for i in range(0, len(body), 64)]
    return "-----BEGIN CERTIFICATE-----\n%s\n-----END CERTIFICATE-----\n" % "\n".join(lines)


def test_only_certificates_missing_from_debian_are_written(tmp_path, capsys):
    known, extra = "A" * 100, "B" * 90
    debian = tmp_path / "mozilla"
    debian.mkdir()
    (debian / "Known.crt").write_text(pem(known))
    bundle = tmp_path / "bundle.crt"
    # The known one is re-wrapped differently in the bundle: still the same cert.
    bundle.write_text(pem(known).replace("\n", "\r\n") + pem(extra) + pem(extra))
    out = tmp_path / "out"
    assert extra_cas.main(["x", str(out), str(bundle), str(debian)]) == 0
    assert capsys.readouterr().out.strip() == "1"
    written = sorted(out.iterdir())
    assert [p.name for p in written] == ["host-extra-00.crt"]
    assert written[0].read_text() == pem(extra)


def test_no_extras_writes_nothing(tmp_path, capsys):
    debian = tmp_path / "mozilla"
    debian.mkdir()
    (debian / "Known.crt").write_text(pem("C" * 70))
    bundle = tmp_path / "bundle.crt"
    bundle.write_text(pem("C" * 70))
    extra_cas.main(["x", str(tmp_path / "out"), str(bundle), str(debian)])
    assert capsys.readouterr().out.strip() == "0"
    assert list((tmp_path / "out").iterdir()) == []
