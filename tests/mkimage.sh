#!/usr/bin/env bash
# mkimage.sh KIND OUT.tar [--fixtures] [--ssh] [--busybox FILE] [--arch ARCH]
#
# Builds a root filesystem tarball that `machinetop image import` turns into
# an image, from Debian's own packages, offline from any OCI registry:
#   busybox  Debian's busybox-static and its applet links; no /sbin/init, so
#            machinetop's agent stays PID 1.
#   debian   Debian bookworm (debootstrap minbase + systemd-sysv, udev, dbus,
#            iproute2, sudo, inotify-tools): the image's systemd boots as
#            PID 1; inotify-tools (inotifywait) is for the file-event tests; dbus is
#            what a non-root user's systemctl (and hostnamectl, loginctl,
#            … for everyone) talks to, as on an ordinary Debian install.
# --fixtures adds the files the end-to-end tests check survive the trip:
#   a setuid-root binary, a binary with a security.capability xattr, and two
#   hard links to one inode.
# --ssh adds an SSH server (Debian's openssh-server) to the debian image.
# --busybox FILE (busybox) installs FILE instead of the host's busybox: a
#   static busybox or a busybox-static .deb, of any architecture. Its applet
#   links are those it lists when it runs here, else those the host's
#   busybox lists (Debian builds busybox-static with one configuration for
#   every architecture, so one release lists the same applets everywhere).
# --arch ARCH (debian) bootstraps Debian architecture ARCH, e.g. arm64. For
#   an architecture this host cannot run, only debootstrap's first stage
#   runs here (--foreign: packages unpacked, the rest kept in
#   /var/cache/apt/archives): boot a machine of that architecture from the
#   image (the agent is PID 1, as there is no /sbin/init yet) and run
#   /debootstrap/debootstrap --second-stage in it as root, then restart it
#   into systemd.
# The tarball keeps numeric owners, modes and xattrs (GNU tar, PAX format).
# debian needs root (debootstrap); run it with sudo otherwise.
set -euo pipefail

usage='usage: mkimage.sh busybox|debian OUT.tar [--fixtures] [--ssh] [--busybox FILE] [--arch ARCH]'
kind=${1:?$usage}
out=${2:?$usage}
shift 2
fixtures= ssh= busybox= arch=
while [ $# -gt 0 ]; do
  case "$1" in
  --fixtures) fixtures=--fixtures ;;
  --ssh) ssh=1 ;;
  --busybox) busybox=$(realpath "${2:?$usage}"); shift ;;
  --arch) arch=${2:?$usage}; shift ;;
  *) echo "mkimage: unknown option $1; $usage" >&2; exit 2 ;;
  esac
  shift
done
out=$(realpath -m "$out")

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
root="$work/root"
mkdir -p "$root"

# The Debian mirror: $MACHINETOP_DEBIAN_MIRROR (as machinetop's kit uses
# it), else the one this host's apt already uses (deb822 or one-line form)
# on a Debian-family host, else Debian's own mirror network.
debian_mirror() {
  local uri=${MACHINETOP_DEBIAN_MIRROR:-}
  if [ -z "$uri" ]; then
    uri=$(grep -hsE '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null |
          awk '{print $2}' | grep -v -- '-security' | grep -i debian | head -n1 || true)
  fi
  if [ -z "$uri" ]; then
    uri=$(grep -hsE '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
          awk '{for(i=2;i<=NF;i++) if ($i ~ /^[a-z]+:\/\//) {print $i; exit}}' | grep -v -- '-security' | grep -i debian | head -n1 || true)
  fi
  echo "${uri:-https://deb.debian.org/debian}"
}

# need TOOL PACKAGES: stop with what to install when TOOL is missing.
need() {
  command -v "$1" >/dev/null 2>&1 || {
    echo "mkimage: $1 not found: install $2 (scripts/deps.sh test installs it)" >&2; exit 1; }
}

case "$kind" in
busybox)
  static_busybox='a static busybox (Debian, Ubuntu, openSUSE, Alpine: busybox-static; Fedora, Arch: busybox)'
  hostbb=$(command -v busybox || true)
  bb=$hostbb
  case "$busybox" in
  *.deb)
    command -v ar >/dev/null || { echo "mkimage: ar not found: install binutils" >&2; exit 1; }
    mkdir "$work/deb"
    (cd "$work/deb" && ar x "$busybox" && tar -xf data.tar.* ./bin/busybox) || {
      echo "mkimage: $busybox holds no ./bin/busybox: give a busybox-static .deb" >&2; exit 1; }
    bb="$work/deb/bin/busybox" ;;
  ?*) bb=$busybox ;;
  esac
  [ -n "$bb" ] || { echo "mkimage: busybox not found: install $static_busybox" >&2; exit 1; }
  file -L "$bb" 2>/dev/null | grep -q 'statically linked' || [ ! -x /usr/bin/file ] || {
    echo "mkimage: $bb is not static: install $static_busybox" >&2; exit 1; }
  # The applet list: from the busybox installed, else from the host's.
  lister=$bb
  "$lister" --list-full >/dev/null 2>&1 || lister=$hostbb
  [ -n "$lister" ] && "$lister" --list-full >/dev/null 2>&1 || {
    echo "mkimage: $bb does not run here, and the host's busybox to list its applets is missing: install $static_busybox" >&2; exit 1; }
  mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,etc,root,tmp,proc,sys,dev,run,var/tmp,home}
  chmod 1777 "$root/tmp" "$root/var/tmp"
  chmod 0700 "$root/root"
  cp "$bb" "$root/bin/busybox"
  for applet in $("$lister" --list-full); do
    case "$applet" in sbin/init|linuxrc|bin/busybox) continue ;; esac
    [ -e "$root/$applet" ] || ln -s /bin/busybox "$root/$applet"
  done
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$root/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' >"$root/etc/group"
  echo busybox >"$root/etc/hostname"
  ;;
debian)
  [ "$(id -u)" = 0 ] || { echo "mkimage: debian needs root (debootstrap): run with sudo" >&2; exit 1; }
  need debootstrap debootstrap
  mirror=${MIRROR:-$(debian_mirror)}
  include=systemd-sysv,udev,dbus,iproute2,sudo,e2fsprogs,inotify-tools
  [ -z "$ssh" ] || include=$include,openssh-server
  foreign=
  if [ -n "$arch" ] && [ "$arch" != "$(dpkg --print-architecture)" ]; then foreign=--foreign; fi
  debootstrap --variant=minbase --include="$include" ${arch:+--arch="$arch"} $foreign \
    bookworm "$root" "$mirror" >"$work/debootstrap.log" 2>&1 || {
      tail -n 30 "$work/debootstrap.log" >&2; exit 1; }
  # A first stage keeps the packages its second stage installs; where
  # debootstrap could not mount /proc it left a symlink, which must be a
  # mount point again.
  [ -n "$foreign" ] || rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
  if [ -L "$root/proc" ]; then rm "$root/proc" && mkdir -m 0555 "$root/proc"; fi
  # A machine's identity is made at its first boot, not baked into the image.
  : >"$root/etc/machine-id"
  echo debian >"$root/etc/hostname"
  ;;
*)
  echo "mkimage: unknown kind $kind (busybox or debian)" >&2; exit 2 ;;
esac

if [ "$fixtures" = --fixtures ]; then
  fx="$root/usr/local/bin"
  mkdir -p "$fx"
  cp "$root/bin/busybox" "$fx/suid-fixture" 2>/dev/null || cp "$root/usr/bin/id" "$fx/suid-fixture"
  chown 0:0 "$fx/suid-fixture" 2>/dev/null || true
  chmod 4755 "$fx/suid-fixture"
  cp "$fx/suid-fixture" "$fx/cap-fixture"
  chmod 0755 "$fx/cap-fixture"
  need setcap 'setcap (Debian, Ubuntu: libcap2-bin; Fedora, Arch: libcap; openSUSE: libcap-progs; Alpine: libcap-utils)'
  setcap cap_net_raw+ep "$fx/cap-fixture"
  echo "one inode, two names" >"$fx/hardlink-a"
  ln "$fx/hardlink-a" "$fx/hardlink-b"
fi

mkdir -p "$(dirname "$out")"
tar --numeric-owner --xattrs --xattrs-include='*' --format=posix \
  -C "$root" -cf "$out.tmp" .
mv "$out.tmp" "$out"
echo "$out"
