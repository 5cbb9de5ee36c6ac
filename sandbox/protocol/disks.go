package protocol

// The serials of a VM's two read-only virtio-blk disks, by which the agent
// finds them (/sys/block/vd*/serial): device names follow the order QEMU
// created the devices in, which nothing guarantees. virtio-blk serials hold
// at most 20 bytes.
const (
	// BaseDiskSerial is the shared Debian base image, the lower layer.
	BaseDiskSerial = "microbox-base"
	// LayerDiskSerial is the language's layer, stacked on the base.
	LayerDiskSerial = "microbox-layer"
)
