#!/bin/sh
# debootstrap's `chroot TARGET COMMAND...` for a foreign arch's second stage, run on
# the host (not in a container): dpkg runs natively, the rest in the chroot.
#
# Bound over /usr/sbin/chroot in a mount namespace of the second stage's own, with
# the real chroot at $ORCHESTRATE_CHROOT. Under QEMU, dpkg itself is most of a
# second stage's cost (decompressing and unpacking every required package); the
# host's dpkg unpacks into TARGET (--root) and chroots into it for each maintainer
# script and trigger, which run under QEMU as they would in the chroot. As in
# foreign-root.sh, it is told that the target's arch is fine (--force-architecture)
# and that dependencies are met (--force-depends): debootstrap orders the packages
# and already forces dependencies for most steps. The .deb files debootstrap names
# are paths inside TARGET. dpkg logs to the target's log, not the host's. It does not
# sync each file it unpacks (--force-unsafe-io, as Debian's container images
# configure it): a second stage that fails is thrown away whole.
set -eu
target=$1
shift
if [ "$1" != dpkg ]; then
  exec "$ORCHESTRATE_CHROOT" "$target" "$@"
fi
shift
for arg; do
  case $arg in
    /var/cache/apt/archives/*.deb) set -- "$@" "$target$arg" ;;
    *) set -- "$@" "$arg" ;;
  esac
  shift
done
exec dpkg --root="$target" --log="$target/var/log/dpkg.log" --force-architecture \
  --force-depends --force-unsafe-io "$@"
