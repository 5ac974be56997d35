#!/bin/sh
# The root file system of a foreign Debian-family builder, its packages installed by
# the engine's own apt and dpkg.
#
# Run as root, with network, in the engine-arch base of the builder's release
# (e.g. debian bookworm amd64 for a bookworm arm64 builder), with under /context:
#   base.tar           the builder's base image, as the engine's tar of its files
#   apt-sources.list   the matrix's extra apt sources
#   ca/*.crt           the matrix's extra CAs
#   tool-venvs.tar.gz  the tool venvs and the trust store made natively (tool-venvs.sh)
#     foreign-root.sh ARCH ROOT TAR PACKAGE...
# and makes the builder's root file system in the folder ROOT, then writes it as the
# file TAR, which the engine sends. ROOT is a RAM file system: its 18,000 files are
# never written to disk and deleted again, only TAR, one file. (Where deleted inodes
# are rescanned on every new one, as on an ext4 without a journal, thousands of files
# deleted just before the engine loads the root would slow that load down too.)
#
# Under QEMU, apt and dpkg themselves are most of an emulated builder's cost:
# reading indexes, decompressing and unpacking about 90 MB of packages. Here they
# run natively; dpkg (--root) chroots into the target for every maintainer script
# and trigger, which run under QEMU as they would in the builder (binfmt_misc with
# the F flag: the interpreter is not looked up inside the chroot). The native dpkg
# takes its own arch for the system's, so it is told that arm64 is fine
# (--force-architecture) and that an arch-all package's dependencies on arm64 ones
# are met (--force-depends): apt has resolved and ordered them for the target arch.
# It does not sync each file it unpacks (--force-unsafe-io, as Debian's container
# images configure it): a root whose script fails is thrown away whole.
# The packages and versions are those of the Dockerfile's own `apt-get install`.
set -eu
arch=$1
t=$2
out=$3
shift 3
export DEBIAN_FRONTEND=noninteractive
mkdir -p "$t"
# The engine's copy of the base image, taken from a container never started: the
# engine's own marker file aside, the base's files.
tar --numeric-owner -C "$t" -xf /context/base.tar
rm -f "$t/.dockerenv"
if [ -s /context/apt-sources.list ]; then
  cp /context/apt-sources.list "$t/etc/apt/sources.list.d/orchestrate.list"
fi
# The extra CAs go in first, for ca-certificates to take them, as in the Dockerfile.
if ls /context/ca/*.crt >/dev/null 2>&1; then
  mkdir -p "$t/usr/local/share/ca-certificates"
  cp /context/ca/*.crt "$t/usr/local/share/ca-certificates/"
fi
tar -C "$t/opt" -xzf /context/tool-venvs.tar.gz
# Maintainer scripts in the chroot write to /dev/null. A base stored without device
# nodes (Podman's builds drop them) gets them while the packages install: made with
# mknod where the engine allows it (Docker), else /dev/null as an empty file
# (Podman grants no CAP_MKNOD). They go again afterwards, as the builder's /dev is
# the engine's at run time.
made=""
for node in null:1:3 zero:1:5 full:1:7 random:1:8 urandom:1:9; do
  name=${node%%:*} numbers=${node#*:}
  [ ! -e "$t/dev/$name" ] || continue
  mkdir -p "$t/dev"
  if mknod -m 666 "$t/dev/$name" c "${numbers%:*}" "${numbers#*:}" 2>/dev/null \
    || { [ "$name" = null ] && install -m 666 /dev/null "$t/dev/null"; }; then
    made="$made $t/dev/$name"
  fi
done
# A file of the target set aside while packages install (dpkg writes an upgrade of
# it beside), and put back: divert --add|--remove PATH.
divert() {
  dpkg-divert --root="$t" --local --rename --divert "$2.orchestrate" "$1" "$2" >/dev/null
}
# The libraries the ELF files "$@" load, each by its path: ldd's "name => /path
# (0x...)" and the loader's "/path (0x...)".
needed_libs() {
  ldd "$@" | awk '$NF ~ /^\(0x/ { for (i = 1; i < NF; i++) if ($i ~ /^\//) print $i }' \
    | sort -u
}
# Each Python of "$pythons" at the target's version, for the engine's arch, and the
# libraries it needs, unpacked in /tmp/native-py/root; fails if one cannot be had.
fetch_pythons() {
  mkdir -p /tmp/native-py/debs
  # apt downloads as its own user: into a folder it may write.
  chown _apt /tmp/native-py/debs 2>/dev/null || true
  for py in $pythons; do
    # shellcheck disable=SC2086
    version=$(apt-cache $apt policy "$py-minimal" | sed -n 's/^ *Candidate: //p')
    # shellcheck disable=SC2086
    (cd /tmp/native-py/debs && apt-get $native download -qq "$py-minimal=$version") || return 1
  done
  # shellcheck disable=SC2086
  (cd /tmp/native-py/debs && apt-get $native download -qq libexpat1) || return 1
  for deb in /tmp/native-py/debs/*.deb; do
    dpkg-deb -x "$deb" /tmp/native-py/root || return 1
  done
}
# The fetched Pythons in the target's place, diverted, with the libraries it lacks.
lend_pythons() {
  for py in $pythons; do
    divert --add "/usr/bin/$py"
    cp /tmp/native-py/root/usr/bin/"$py" "$t/usr/bin/$py"
    lent_pythons="$lent_pythons $py"
    # The downloaded libraries before the engine's own.
    for lib in $(export LD_LIBRARY_PATH="$(printf "%s:" /tmp/native-py/root/lib/*-linux-gnu* \
      /tmp/native-py/root/usr/lib/*-linux-gnu*)"; needed_libs "/tmp/native-py/root/usr/bin/$py"); do
      path=${lib#/tmp/native-py/root}
      [ -e "$t$path" ] || { cp -L "$lib" "$t$path" && lent_python_libs="$lent_python_libs $path"; }
    done
  done
}
# update-ca-certificates costs about 35 s under QEMU: diverted while packages
# install; the natively made store is copied in afterwards (see tool-venvs.sh).
divert --add /usr/sbin/update-ca-certificates
ln -s /bin/true "$t/usr/sbin/update-ca-certificates"
# The engine's own shell and text tools while the maintainer scripts run. Under QEMU
# a process costs tens of milliseconds before it does anything, and ca-certificates'
# config script alone starts about 900 (a subshell and a grep for each certificate).
# They take the target's place, diverted, with the loader and libraries they need
# in the engine arch's own folders, which no package of the target arch uses. They
# only read and write files: uname, dpkg and the interpreters stay the target's, so
# the scripts see the target's architecture. All of it goes before the root is
# taken. They may share a folder the target has (ppc64el's /lib64 holds its own
# loader beside where the engine's goes), never a file: a target that already has
# one of those files keeps its own tools.
names="dash grep sed cat chmod chown cp ln mkdir mv readlink rm touch basename cut dirname
  expr head md5sum sort stat tr uniq wc"
# Each under the path the target's dpkg lists it (/bin/cat in bookworm, /usr/bin/cat
# from trixie): an upgrade of its package then goes beside the diversion, not over
# the engine's copy. (The engine's copy is found by name: the same release.)
# shellcheck disable=SC2086  # one word per path
tools=$(dpkg-query --admindir="$t/var/lib/dpkg" -S $(for name in $names; do
  printf '/bin/%s /usr/bin/%s ' "$name" "$name"; done) 2>/dev/null | sed -n 's/^[^ ]*: //p')
# shellcheck disable=SC2086  # one word per path
libs=$(needed_libs $tools)
folders=$(for lib in $libs; do dirname "$lib"; done | sort -u)
for lib in $libs; do
  [ ! -e "$t$lib" ] && [ ! -L "$t$lib" ] || tools=""
done
lent="" made_folders=""
if [ -n "$tools" ]; then
  for folder in $folders; do  # /lib/x and /usr/lib/x are one folder in a merged /usr
    [ -d "$t$folder" ] || { mkdir "$t$folder" && made_folders="$t$folder $made_folders"; }
  done
  for lib in $libs; do
    cp -L "$lib" "$t$lib"
  done
  for tool in $tools; do
    divert --add "$tool"
    cp "$(command -v "${tool##*/}")" "$t$tool"
  done
  lent="$tools"
  echo "orchestrate: the engine's own$(for tool in $tools; do printf ' %s' "${tool##*/}"; done)" \
    "in the target while its packages install"
fi

# Both apt runs here, the target's and the engine's below, leave out the translations
# of the packages' descriptions (6 MB for bookworm's main): the lists go at the end.
apt="-o APT::Architecture=$arch -o APT::Architectures::=$arch -o Dir::Etc=$t/etc/apt
  -o Dir::State=$t/var/lib/apt -o Dir::Cache=$t/var/cache/apt -o Dir::Log=$t/var/log/apt
  -o Dir::State::status=$t/var/lib/dpkg/status -o DPkg::Options::=--root=$t
  -o DPkg::Options::=--log=$t/var/log/dpkg.log -o DPkg::Options::=--force-architecture
  -o DPkg::Options::=--force-depends -o DPkg::Options::=--force-unsafe-io
  -o Acquire::Languages=none"
# The engine's own Python for the byte-compiling that the Pythons' postinsts run
# (py_compile and py3compile: about 10 s under QEMU for arm64; neither needs an
# extension module): a .deb of the target's version for the engine's arch, from
# the same sources, verified by apt, its index read while the target's is.
host=$(dpkg --print-architecture)
pythons=$(for p; do case $p in python3.[0-9] | python3.[0-9][0-9]) echo "$p" ;; esac; done)
native="-o APT::Architecture=$host -o APT::Architectures::=$host -o Dir::Etc=$t/etc/apt
  -o Dir::State=/tmp/native-apt -o Dir::Cache=/tmp/native-apt/cache
  -o Dir::State::status=/var/lib/dpkg/status -o Acquire::Languages=none"
native_update=""
if [ -n "$lent" ] && [ -n "$pythons" ]; then
  mkdir -p /tmp/native-apt/lists/partial /tmp/native-apt/cache/archives/partial
  # shellcheck disable=SC2086
  apt-get $native update -qq >/tmp/native-apt/update.log 2>&1 &
  native_update=$!
fi
# Again after a pause: a mirror in the middle of a sync serves mismatched indexes;
# a pocket still unreadable is left out, as in the builder (see _common.j2).
# shellcheck disable=SC2086  # one word per option: none holds a space
apt-get $apt update -qq || { sleep 15 && apt-get $apt update -qq; } \
  || { sleep 60 && apt-get $apt update -qq; } \
  || echo "orchestrate: WARNING: a package index could not be read: see above" >&2
lent_pythons="" lent_python_libs=""
if [ -n "$native_update" ]; then
  if wait "$native_update" && fetch_pythons; then
    lend_pythons
    echo "orchestrate: the engine's own$lent_pythons in the target while its packages install"
  else
    cat /tmp/native-apt/update.log >&2
    echo "orchestrate: the target's own Python byte-compiles: no $host build of it (see above)"
  fi
fi
# The Dockerfile's dist-upgrade and install in one run: the same packages at the
# same versions, and one dpkg run of each kind for both rather than two, each
# with its own triggers under QEMU.
# shellcheck disable=SC2086
apt-get $apt -y --no-install-recommends dist-upgrade "$@"

for py in $lent_pythons; do
  rm "$t/usr/bin/$py"
  divert --remove "/usr/bin/$py"
done
for lib in $lent_python_libs; do
  rm "$t$lib"
done
for tool in $lent; do
  rm "$t$tool"
  divert --remove "$tool"
done
if [ -n "$lent" ]; then
  for lib in $libs; do
    # A package of the target that wrote one of these paths would lose its file.
    [ ! -e "$t$lib" ] || cmp -s "$lib" "$t$lib" || {
      echo "orchestrate: a package of the target replaced the engine's $lib" >&2
      exit 1
    }
    rm -f "$t$lib"  # -f: a library named under both /lib and /usr/lib goes once
  done
  # shellcheck disable=SC2086  # one word per folder
  rmdir $made_folders  # fails the root if a package of the target put a file there
fi
rm "$t/usr/sbin/update-ca-certificates"
divert --remove /usr/sbin/update-ca-certificates
store=$t/opt/orchestrate/ca-store
if [ "$(dpkg-query --admindir="$t/var/lib/dpkg" -W -f '${Version}' ca-certificates)" = "$(cat "$store/version")" ]; then
  cp -a "$store/certs/." "$t/etc/ssl/certs/"
else
  chroot "$t" update-ca-certificates
fi
# The Dockerfile's `apt-get clean`: the packages and apt's two caches of the indexes
# (pkgcache.bin, srcpkgcache.bin: 80 MB that every push would compress).
# shellcheck disable=SC2086
apt-get $apt clean
# shellcheck disable=SC2086  # one word per node
rm -rf "$store" "$t/var/lib/apt/lists/"* $made
# The engine's own tar of a folder leaves out times other than mtime, and so does
# this one; the owners by number, as the engine's load takes them; a capability
# a maintainer script set (setcap) kept.
tar --numeric-owner --format=posix --pax-option=delete=atime,delete=ctime \
  --xattrs --xattrs-include=security.capability -C "$t" -cf "$out" .
