// Package protocol is the wire format between the host runner and the guest
// agent over the VM's virtio-console port: one byte stream carrying framed
// messages. Every frame is a one-byte type and a four-byte big-endian length
// followed by that many bytes, so program output can stream and binary data
// passes unchanged. The agent announces Version in its Hello; the host refuses
// an agent of another version.
package protocol
