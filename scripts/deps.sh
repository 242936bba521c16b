#!/bin/sh
# deps.sh GROUP...
#
# Checks the host programs the make targets need and installs the missing
# ones with the host's package manager (apt-get, dnf, pacman, zypper or
# apk; through sudo unless run as root). With no known package manager it
# lists the packages to install and fails. Groups:
#   run    what machinetop needs to run machines: QEMU for the host
#          architecture, virtiofsd for virtio-fs shares and, for an
#          ordinary user, newuidmap/newgidmap (virtiofsd runs as root of a
#          user namespace with the user's subordinate ids)
#   image  what `make image` needs to make the Debian image: debootstrap
#   test   what the end-to-end tests use besides: a static busybox, setcap,
#          tmux, an SSH client, and e2fsprogs (the tests check disks with
#          e2fsck -fn; machinetop itself formats and checks disks in the
#          guest)
# On macOS nothing is needed: the Virtualization framework replaces QEMU.
set -eu
# A non-root PATH often lacks the sbin directories tools land in.
PATH=$PATH:/usr/sbin:/sbin
export PATH

if [ "$(uname -s)" = Darwin ]; then
  echo "deps: macOS needs nothing installed (no QEMU, no e2fsprogs, no apt): machinetop uses Apple's Virtualization framework"
  exit 0
fi

# The host's emulator, and the other architecture's (machines of the other
# architecture run emulated under TCG; the tests boot one).
case "$(uname -m)" in
aarch64 | arm64) qemu=qemu-system-aarch64 other=qemu-system-x86_64 ;;
*) qemu=qemu-system-x86_64 other=qemu-system-aarch64 ;;
esac

pm=
for p in apt-get dnf pacman zypper apk; do
  if command -v "$p" >/dev/null 2>&1; then pm=$p; break; fi
done

# pkg TOOL: the package that has TOOL under $pm ("" for no package manager).
pkg() {
  case "$pm:$1" in
  apt-get:qemu-system-x86_64 | pacman:qemu-system-x86_64) echo qemu-system-x86 ;;
  dnf:qemu-system-x86_64) echo qemu-system-x86-core ;;
  zypper:qemu-system-x86_64) echo qemu-x86 ;;
  apk:qemu-system-x86_64) echo qemu-system-x86_64 ;;
  apt-get:qemu-system-aarch64) echo qemu-system-arm ;;
  dnf:qemu-system-aarch64) echo qemu-system-aarch64-core ;;
  pacman:qemu-system-aarch64 | apk:qemu-system-aarch64) echo qemu-system-aarch64 ;;
  zypper:qemu-system-aarch64) echo qemu-arm ;;
  apt-get:virtiofsd)
    # Debian 12 ships the C virtiofsd with QEMU; later releases apart.
    if apt-cache show virtiofsd >/dev/null 2>&1; then echo virtiofsd; else echo qemu-system-common; fi ;;
  *:virtiofsd) echo virtiofsd ;;
  *:debootstrap) echo debootstrap ;;
  apt-get:busybox | zypper:busybox | apk:busybox) echo busybox-static ;;
  *:busybox) echo busybox ;;
  apt-get:setcap) echo libcap2-bin ;;
  dnf:setcap | pacman:setcap) echo libcap ;;
  zypper:setcap) echo libcap-progs ;;
  apk:setcap) echo libcap-utils ;;
  *:tmux) echo tmux ;;
  apt-get:ssh | apk:ssh) echo openssh-client ;;
  dnf:ssh | zypper:ssh) echo openssh-clients ;;
  pacman:ssh) echo openssh ;;
  *:e2fsck) echo e2fsprogs ;;
  apt-get:newuidmap) echo uidmap ;;
  dnf:newuidmap) echo shadow-utils ;;
  apk:newuidmap) echo shadow-uidmap ;;
  *:newuidmap) echo shadow ;;
  *:ar) echo binutils ;;
  esac
}

# have TOOL: whether the host has it.
have() {
  case "$1" in
  virtiofsd)
    for p in "${MACHINETOP_VIRTIOFSD:-}" /usr/lib/qemu/virtiofsd /usr/libexec/virtiofsd /usr/lib/virtiofsd; do
      [ -n "$p" ] && [ -x "$p" ] && return 0
    done
    command -v virtiofsd >/dev/null 2>&1 ;;
  *) command -v "$1" >/dev/null 2>&1 ;;
  esac
}

tools=
for group in "$@"; do
  case "$group" in
  run) tools="$tools $qemu virtiofsd"; [ "$(id -u)" = 0 ] || tools="$tools newuidmap" ;;
  image) tools="$tools debootstrap" ;;
  test) tools="$tools $other busybox setcap tmux ssh e2fsck ar newuidmap" ;;
  *) echo "deps: unknown group $group (run, image or test)" >&2; exit 2 ;;
  esac
done

missing= pkgs=
for t in $tools; do
  have "$t" && continue
  missing="$missing $t"
  p=$(pkg "$t")
  case " $pkgs " in *" $p "*) ;; *) pkgs="$pkgs $p" ;; esac
done
[ -n "$missing" ] || exit 0

if [ -z "$pm" ]; then
  echo "deps: missing:$missing" >&2
  echo "deps: no known package manager (apt-get, dnf, pacman, zypper, apk) found: install these programs with yours" >&2
  exit 1
fi
sudo=
[ "$(id -u)" = 0 ] || sudo=sudo
echo "deps: missing:$missing; installing with $pm:$pkgs"
case "$pm" in
apt-get) $sudo apt-get update -q && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q $pkgs ;;
dnf) $sudo dnf install -y $pkgs ;;
pacman) $sudo pacman -S --needed --noconfirm $pkgs ;;
zypper) $sudo zypper --non-interactive install $pkgs ;;
apk) $sudo apk add $pkgs ;;
esac
