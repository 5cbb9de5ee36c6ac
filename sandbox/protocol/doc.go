// Package protocol is the wire format between the host and the guest agent
// over the VM's virtio-console port: one byte stream carrying framed
// messages. Every frame is a one-byte type, a four-byte stream id and a
// four-byte length (both big endian) followed by that many bytes, so that
// output can stream, binary data passes unchanged, and a session's
// processes and file transfers interleave on the one port, each on a
// stream of its own. Output and file data flow under credit, so a side
// that stops reading stops the other instead of growing its buffers. The
// agent announces Version in its Hello; the host refuses an agent of
// another version.
package protocol
