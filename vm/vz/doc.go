// Package vz is the macOS backend: it runs each machine inside the
// supervisor process with Apple's Virtualization framework, through
// github.com/Code-Hex/vz/v3.
//
// A machine gets the Linux boot loader (kernel, initramfs, command line with
// console=hvc0), virtio-blk disks told apart by their block device
// identifier (the guest's /sys/block/vdX/serial), a virtio network device on
// the NAT attachment with a MAC address kept per machine, a virtio console
// appended to the console log, a virtio entropy device, a traditional
// virtio memory balloon, a virtio socket device for the guest agent
// (vsock port proto.VsockPort) and a generic platform whose machine
// identifier is kept per machine.
//
// The backend itself builds only on darwin and needs cgo and Apple's SDK.
// The helpers in this file's siblings without a build constraint hold the
// parts that do not call the framework, so that they are tested on every
// host; on Linux a test type-checks the darwin sources against the vz
// module's own sources.
package vz
