// Package kit builds and caches the guest kit a machine boots from: a Linux
// kernel image, and an initramfs that carries the guest binary as /init
// together with the kernel modules the guest needs (virtio devices,
// virtiofs, 9p, overlay, vsock) and e2fsprogs' mke2fs and e2fsck for the
// guest architecture (with their libraries and the dynamic loader), with
// which the guest formats and checks its own disk, laid out as the boot
// contract in guest/proto says.
//
// By default the kernel is Debian's cloud kernel package for the guest
// architecture (linux-image-cloud-<arch>, following the metapackage to
// the versioned image package), the newest of Debian 12 (bookworm) and
// its security suite, fetched straight from the Debian archive over HTTPS
// and verified against Debian's archive keys by package debarchive; no
// apt, dpkg or keyring is needed on the host, so macOS and any Linux
// distribution get the same kernel. A given .deb or a given vmlinuz (with
// an optional /lib/modules/<release> tree) can be used instead. Packages
// are read in Go (deb(5) is an ar(5) archive holding control.tar and
// data.tar); nothing of dpkg is run. The initramfs is a newc cpio archive as the
// kernel's Documentation/driver-api/early-userspace/buffer-format.rst
// describes.
//
// A built kit is stored under cacheDir/<digest>/, where the digest covers
// everything the kit is made from, so a second Ensure with the same inputs
// only hashes them and returns.
package kit
