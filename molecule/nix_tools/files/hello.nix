# A tool built without nixpkgs or a binary cache: the builder is the sandbox's /bin/sh (a static
# busybox on Debian, whose applets need no PATH); PATH covers an unsandboxed build on the host.
{ system ? builtins.currentSystem }:
derivation {
  name = "hello-sandbox";
  inherit system;
  builder = "/bin/sh";
  PATH = "/usr/bin:/bin";
  args = [
    "-c"
    "mkdir -p $out/bin; printf '#!/bin/sh\\necho hello from the sandbox\\n' > $out/bin/hello-sandbox; chmod +x $out/bin/hello-sandbox"
  ];
}
