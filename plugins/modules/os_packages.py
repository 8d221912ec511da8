#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, agent-sandbox developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: os_packages
short_description: Install the distribution packages a role needs, refreshing the lists only when one is missing
version_added: 0.1.0
description:
  - The one way every role of the collection installs distribution packages (Debian family, apt).
  - Reads which of O(name) are installed (C(dpkg-query)). When all are, it changes nothing and needs no network.
  - When any is missing, it always refreshes the package lists first (C(apt-get update)), whatever their age,
    and then installs the missing ones (C(apt-get install)). The age of the lists says nothing on a host whose
    image shipped without them (cloud images, fresh VMs, containers), which is why C(cache_valid_time) is not used.
  - In check mode it reports what it would install and runs nothing but the read, so it works on a host with
    empty package lists.
author:
  - agent-sandbox developers (@agent-sandbox)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
options:
  name:
    description:
      - The packages that must be installed, as plain Debian package names (no version, no architecture).
    type: list
    elements: str
    required: true
attributes:
  check_mode:
    support: full
    details: Reports the packages it would install; it neither refreshes the lists nor installs.
  diff_mode:
    support: full
    details: Shows each package as installed or missing before, and all installed after.
  platform:
    platforms: debian
notes:
  - Requires root, as apt does. Waits up to 120 seconds for another apt or dpkg process to release its locks
    (the lists' lock for C(apt-get update), dpkg's for C(apt-get install)).
seealso:
  - module: ansible.builtin.apt
"""

EXAMPLES = r"""
- name: Install nftables and the ACL tools
  agent_sandbox.native.os_packages:
    name: [nftables, acl]
"""

RETURN = r"""
missing:
  description: The packages of O(name) that were not installed when the module started.
  returned: always
  type: list
  elements: str
  sample: [nftables]
installed:
  description: The packages installed by this run (in check mode, the ones it would install).
  returned: always
  type: list
  elements: str
  sample: [nftables]
cache_updated:
  description: Whether the package lists were refreshed.
  returned: always
  type: bool
  sample: true
"""

import re
import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.agent_sandbox.native.plugins.module_utils._errors import CommandError, run_and_exit

# Debian policy 5.6.7: lower case letters, digits, + - . ; at least two characters, starting alphanumeric.
PACKAGE_NAME = re.compile(r"^[a-z0-9][a-z0-9+.-]+$")
LOCK_WAIT = 120
LOCK_STEP = 5
APT_OPTIONS = ["-o", "DPkg::Lock::Timeout=%d" % LOCK_WAIT]
# Keep the host's changed config files and never ask: a role run has no terminal.
INSTALL_OPTIONS = ["-o", "Dpkg::Options::=--force-confdef", "-o", "Dpkg::Options::=--force-confold"]
APT_ENVIRON = {"DEBIAN_FRONTEND": "noninteractive", "APT_LISTCHANGES_FRONTEND": "none"}


def installed_packages(module, dpkg_query, names):
    """The subset of names that dpkg knows as installed."""
    cmd = [dpkg_query, "-W", "-f=${Package}\t${db:Status-Abbrev}\n"] + names
    rc, out, err = module.run_command(cmd)
    # rc 1 only means that some name is unknown to dpkg, which is what we are asking.
    if rc not in (0, 1):
        raise CommandError("cannot read the installed packages", cmd, rc, out, err)
    installed = set()
    for line in out.splitlines():
        package, dummy, status = line.partition("\t")
        # Status-Abbrev is want/state/error: "ii " is installed, "rc " only left config files behind.
        if len(status) >= 2 and status[1] == "i":
            installed.add(package)
    return installed


def apt_get(module, apt, args, what):
    cmd = [apt] + APT_OPTIONS + args
    # DPkg::Lock::Timeout covers dpkg's lock, not the lists' lock that apt-get update takes: on a
    # fresh VM apt-daily or cloud-init may hold it for a while, so wait for it here.
    for waited in range(0, LOCK_WAIT + 1, LOCK_STEP):
        rc, out, err = module.run_command(cmd, environ_update=APT_ENVIRON)
        if rc == 0 or "Could not get lock" not in err or waited == LOCK_WAIT:
            break
        time.sleep(LOCK_STEP)
    if rc != 0:
        errors = [line for line in (err or out).splitlines() if line.startswith(("E:", "W:"))]
        raise CommandError("%s failed: %s" % (what, " ".join(errors) or "apt-get exited with %d" % rc),
                           cmd, rc, out, err)


def status_text(names, installed):
    return "".join("%s %s\n" % (name, "installed" if name in installed else "missing") for name in names)


def run(module):
    names = sorted(set(module.params["name"]))
    # Checked first, so that no name can be read as an option by dpkg-query or apt-get.
    bad = [name for name in names if not PACKAGE_NAME.match(name)]
    if bad:
        raise CommandError("not a plain Debian package name (no version or architecture): %s" % ", ".join(bad))
    dpkg_query = module.get_bin_path("dpkg-query", required=True)
    installed = installed_packages(module, dpkg_query, names)
    missing = [name for name in names if name not in installed]
    result = {"changed": bool(missing), "missing": missing, "installed": missing, "cache_updated": False}
    if module._diff:
        result["diff"] = {"before_header": "packages", "after_header": "packages",
                          "before": status_text(names, installed), "after": status_text(names, names)}
    if not missing or module.check_mode:
        return result

    apt = module.get_bin_path("apt-get", required=True)
    apt_get(module, apt, ["update", "-q"], "refreshing the package lists (apt-get update)")
    result["cache_updated"] = True
    apt_get(module, apt, INSTALL_OPTIONS + ["install", "-y", "-q"] + missing,
            "installing %s (apt-get install)" % " ".join(missing))
    now = installed_packages(module, dpkg_query, missing)
    still = [name for name in missing if name not in now]
    if still:
        raise CommandError("apt-get install succeeded but these packages are still not installed: %s"
                           % ", ".join(still))
    return result


def main():
    module = AnsibleModule(
        argument_spec=dict(name=dict(type="list", elements="str", required=True)),
        supports_check_mode=True,
    )
    run_and_exit(module, run)


if __name__ == "__main__":
    main()
