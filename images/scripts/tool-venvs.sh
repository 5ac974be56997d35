#!/bin/sh
# The tool venvs of a foreign builder, made natively on the engine's own arch.
#
# Run as root, with network, in the engine-arch base of the builder's release
# (e.g. debian bookworm amd64 for a bookworm arm64 builder), with the builder's
# context files under /context (ca/*.crt, pip.conf, apt-sources.list):
#     tool-venvs.sh "PYTHONS" TOOL...
# It makes /opt/orchestrate/pyX.Y for each Python with TOOL... installed, as the
# builder's Dockerfile would. Every tool is a pure-Python wheel and a venv holds
# only links to /usr/bin/pythonX.Y, so the folder is the same on every arch: the
# foreign builder gets it as an archive instead of running ensurepip and pip
# under QEMU (about 25 s a builder).
set -eu
pythons=$1
shift
export DEBIAN_FRONTEND=noninteractive
if [ -s /context/apt-sources.list ]; then
  cp /context/apt-sources.list /etc/apt/sources.list.d/orchestrate.list
fi
packages=ca-certificates
for py in $pythons; do packages="$packages python$py python$py-venv"; done
# Only the package indexes: the translations of their descriptions (6 MB for
# bookworm's main) are of no use here.
echo 'Acquire::Languages "none";' >/etc/apt/apt.conf.d/99orchestrate-indexes-only
# Again after a pause: a mirror in the middle of a sync serves mismatched indexes;
# a pocket still unreadable is left out, as in the builder (see _common.j2).
apt-get update -qq || { sleep 15 && apt-get update -qq; } || { sleep 60 && apt-get update -qq; } \
  || echo "orchestrate: WARNING: a package index could not be read: see above" >&2
# Without a sync of each file unpacked: the container is thrown away whole if it fails.
# shellcheck disable=SC2086  # one word per package
apt-get install -y -qq -o DPkg::Options::=--force-unsafe-io --no-install-recommends $packages \
  >/dev/null
if ls /context/ca/*.crt >/dev/null 2>&1; then
  cp /context/ca/*.crt /usr/local/share/ca-certificates/
  update-ca-certificates >/dev/null
fi
if [ -f /context/pip.conf ]; then cp /context/pip.conf /etc/pip.conf; fi
bundle=/etc/ssl/certs/ca-certificates.crt
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
# Bytecode that records its source's hash, not its time (py_compile's mode when
# SOURCE_DATE_EPOCH is set): the folder is then the same bytes whenever it is made,
# and its archive, packed without times, too.
export SOURCE_DATE_EPOCH=315532800
export PIP_CERT=$bundle REQUESTS_CA_BUNDLE=$bundle SSL_CERT_FILE=$bundle
for py in $pythons; do
  "python$py" -m venv "/opt/orchestrate/py$py"
  "/opt/orchestrate/py$py/bin/pip" install -q "$@"
done
# The trust store as ca-certificates makes it (with the extra CAs above), for the
# foreign builder to take instead of running update-ca-certificates under QEMU:
# twice per install, about 35 s, for files that are the same on every arch. The
# builder takes it only when its ca-certificates is this version.
store=/opt/orchestrate/ca-store
mkdir -p "$store"
cp -a /etc/ssl/certs "$store/certs"
dpkg-query -W -f '${Version}' ca-certificates > "$store/version"
