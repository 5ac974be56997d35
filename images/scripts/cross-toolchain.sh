#!/bin/sh
# A native cross compiler for a foreign builder, made on the engine's own arch.
#
# Run as root, with network, in the engine-arch base of the builder's release
# (e.g. debian bookworm amd64 for a bookworm arm64 builder):
#     cross-toolchain.sh TRIPLET DEST
# It installs the distro's default gcc and g++ for TRIPLET (the same major
# version as the builder's own compiler, since both are the release's default)
# and gathers into DEST a relocatable prefix that the builder runs natively
# (the kernel runs engine-arch programs directly, whatever the rootfs):
#   DEST/usr/...          the cross packages' files (no target libc: the
#                         builder's own headers and libraries are used, with
#                         --sysroot=/)
#   DEST/lib/             the engine-arch shared libraries they need, and the
#                         engine arch's dynamic loader
#   DEST/bin/             wrappers: cc gcc c++ g++ cpp ld and the TRIPLET names
#   DEST/toolchain.json   triplet, host machine, GCC version, loader, packages
# `apt-get install` of these packages inside the foreign builder does not work
# (their Architecture: all cross libraries are not Multi-Arch: foreign), so the
# prefix is made here and copied in.
set -eu
triplet=$1
dest=$2
export DEBIAN_FRONTEND=noninteractive
# The release's updates suite too, so that a cross compiler rebuilt to match the
# builder's point-release gcc is found (apt takes the newest version).
main=$(grep -m1 '^deb ' /etc/apt/sources.list 2>/dev/null || true)
if [ -n "$main" ] && ! grep -q -- '-updates' /etc/apt/sources.list; then
  echo "$main" | awk '{ $3 = $3 "-updates"; print }' >>/etc/apt/sources.list
fi
# Only the package indexes: the translations of their descriptions (6 MB for
# bookworm's main) are of no use here.
echo 'Acquire::Languages "none";' >/etc/apt/apt.conf.d/99orchestrate-indexes-only
# Again after a pause: a mirror in the middle of a sync serves mismatched indexes;
# a pocket still unreadable is left out, as in the builder (see _common.j2).
apt-get update -qq || { sleep 15 && apt-get update -qq; } || { sleep 60 && apt-get update -qq; } \
  || echo "orchestrate: WARNING: a package index could not be read: see above" >&2
# Without a sync of each file unpacked: the container is thrown away whole if it fails.
apt-get install -y -qq -o DPkg::Options::=--force-unsafe-io --no-install-recommends \
  "gcc-$triplet" "g++-$triplet" >/dev/null

major=$("$triplet-gcc" -dumpversion)
full=$("$triplet-gcc" -dumpfullversion)
# The cross compiler's packages, without the target's libc and kernel headers:
# the builder's own are the ones its native compiler uses.
packages=$(dpkg-query -W -f '${Package}\n' \
  | grep -E -- "-$triplet(-base)?\$|-cross\$" \
  | grep -v -E -- '^(libc6|libc6-dev|linux-libc-dev)-[a-z0-9]+-cross$')

mkdir -p "$dest/bin" "$dest/lib"
for p in $packages; do dpkg -L "$p"; done | sort -u | while read -r f; do
  if [ -f "$f" ] || [ -L "$f" ]; then printf '%s\n' "${f#/}"; fi
done >/tmp/cross-files
tar -C / -cf - -T /tmp/cross-files | tar -C "$dest" -xf -

# Engine-arch libraries the toolchain's programs and plugins load, and the loader.
find "$dest/usr" -type f | while read -r f; do
  ldd "$f" 2>/dev/null || true
done >/tmp/cross-ldd
awk '$2 == "=>" && $3 ~ /^\// {print $3}' /tmp/cross-ldd | sort -u | while read -r lib; do
  cp -L "$lib" "$dest/lib/"
done
loader=$(awk '$1 ~ /^\/.*ld-linux/ {print $1; exit}' /tmp/cross-ldd)
cp -L "$loader" "$dest/lib/"

wrap() {  # wrap NAME TOOL [ARGS]: DEST/bin/NAME runs DEST/usr/bin/TOOL ARGS "$@"
  name=$1 tool=$2
  shift 2
  printf '#!/bin/sh\nLD_LIBRARY_PATH=%s/lib exec %s/usr/bin/%s %s "$@"\n' \
    "$dest" "$dest" "$tool" "$*" >"$dest/bin/$name"
  chmod 0755 "$dest/bin/$name"
}
for name in cc gcc "$triplet-gcc" "$triplet-gcc-$major"; do
  wrap "$name" "$triplet-gcc-$major" --sysroot=/
done
for name in c++ g++ "$triplet-g++" "$triplet-g++-$major"; do
  wrap "$name" "$triplet-g++-$major" --sysroot=/
done
for name in cpp "$triplet-cpp"; do wrap "$name" "$triplet-cpp-$major" --sysroot=/; done
for name in ld "$triplet-ld"; do wrap "$name" "$triplet-ld" --sysroot=/; done

versions=$(for p in $packages; do
  printf '"%s": "%s",' "$p" "$(dpkg-query -W -f '${Version}' "$p")"
done)
cat >"$dest/toolchain.json" <<EOF
{"triplet": "$triplet", "host": "$(uname -m)", "gcc": "$full", "major": "$major",
 "loader": "$loader",
 "packages": {${versions%,}}}
EOF
echo "cross toolchain for $triplet: gcc $full, loader $loader, $(wc -l </tmp/cross-files) files"
