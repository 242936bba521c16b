// Package images is machinetop's local image store: the OCI images that
// machines are created from.
//
// A Store is an OCI image layout directory (OCI image-spec
// image-layout.md) with one index.json entry per tag, so other OCI tools
// can read it. Images enter it through Put (the path pull and Dockerfile
// build use) or Import (root filesystem tarballs, "docker save" tarballs
// and OCI layouts); they are addressed as NAME[:TAG] or by a manifest
// digest prefix. RootfsTar flattens an image's layers into the single tar
// file a machine's first boot unpacks onto its root disk.
//
// Several processes may use one store at once: index.json is replaced
// atomically under a file lock, blobs are written before the index refers
// to them, and garbage collection excludes all writers.
package images
