# The ways a build could fetch something, for the verifier (tests/test_nix_egress.py). Every build
# runs as a build user (nixbld<N>); the scenario turns the build sandbox off, so the builder is the
# host's /bin/sh with the host's curl and network, as a fixed-output build has on a real host.
#   builtin - a fixed-output download by Nix itself (builtin:fetchurl, as <nix/fetchurl.nix>)
#   fod     - a fixed-output derivation whose builder runs curl, honouring http_proxy/https_proxy
#   direct  - a fixed-output derivation whose builder runs curl past the proxy
#   plain   - an ordinary derivation whose builder runs curl past the proxy
{ mode, url, sha256 ? "0000000000000000000000000000000000000000000000000000000000000000", tag ? "x" }:
let
  fixed = {
    outputHashMode = "flat";
    outputHashAlgo = "sha256";
    outputHash = sha256;
  };
  curl = flags: derivation ({
    name = "egress-${mode}-${tag}";
    system = builtins.currentSystem;
    builder = "/bin/sh";
    PATH = "/usr/bin:/bin";
    impureEnvVars = [ "http_proxy" "https_proxy" ];
    args = [ "-c" "curl -fsS --connect-timeout 3 --max-time 10 ${flags} -o $out ${url} || { echo curl failed: $? >&2; exit 1; }" ];
  } // (if mode == "plain" then { } else fixed));
in
if mode == "builtin" then
  import <nix/fetchurl.nix> { inherit url sha256; name = "egress-builtin-${tag}"; }
else if mode == "fod" then
  curl "--cacert /etc/agent-sandbox/ca-bundle.pem"
else
  curl "--noproxy '*' --cacert /etc/fake-internet/ca.pem"
