// Package kit builds and caches the guest kit a machine boots from: a Linux
// kernel image, and an initramfs that carries the guest binary as /init
// together with the kernel modules the guest needs (virtio devices,
// virtiofs, 9p, overlay, vsock), laid out as the boot contract in
// guest/proto says.
//
// On Linux the kernel comes by default from the distribution's cloud kernel
// package for the host architecture (Debian's linux-image-cloud-<arch>),
// fetched with `apt-get download`; a given .deb or a given vmlinuz (with an
// optional /lib/modules/<release> tree) can be used instead. Packages are
// read in Go (deb(5) is an ar(5) archive holding control.tar and data.tar);
// nothing of dpkg is run. The initramfs is a newc cpio archive as the
// kernel's Documentation/driver-api/early-userspace/buffer-format.rst
// describes.
//
// A built kit is stored under cacheDir/<digest>/, where the digest covers
// everything the kit is made from, so a second Ensure with the same inputs
// only hashes them and returns.
package kit
