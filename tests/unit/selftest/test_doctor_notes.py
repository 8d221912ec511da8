# Copyright: (c) 2026, agent-sandbox developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""agent-sandbox doctor lists each wildcard opted into with trust_every_owner_below as a note, not a check."""
from __future__ import annotations

import json


def run(doctor, tmp_path, capsys, cfg, *flags):
    config = tmp_path / "doctor.json"
    config.write_text(json.dumps(dict({"agents": [], "proxy_port": 8080}, **cfg)))
    rc = doctor.main(["doctor", "--config", str(config)] + list(flags))
    return rc, capsys.readouterr().out


def test_opted_in_wildcards_are_notes(doctor, tmp_path, capsys):
    rc, out = run(doctor, tmp_path, capsys, {"opted_in_wildcards": ["*.github.io"]}, "--json")
    data = json.loads(out)
    assert rc == 0 and data["results"] == [] and data["failed"] == 0
    assert data["notes"] == ["*.github.io is allowed with trust_every_owner_below: anyone who gets a name under it"
                             " can receive data from the agent"]
    rc, out = run(doctor, tmp_path, capsys, {"opted_in_wildcards": ["*.github.io"]})
    assert "NOTE  *.github.io is allowed with trust_every_owner_below" in out


def test_no_opt_in_no_note(doctor, tmp_path, capsys):
    rc, out = run(doctor, tmp_path, capsys, {}, "--json")
    assert rc == 0 and json.loads(out)["notes"] == []
