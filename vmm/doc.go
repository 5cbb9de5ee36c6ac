// Package vmm runs microVMs on QEMU's microvm machine: the command line (no
// PCI, no ACPI, virtio-mmio devices, never a network device), the choice of
// accelerator (KVM where the host has hardware virtualization, TCG elsewhere),
// the QMP control socket, the agent's initramfs, and the guest kernel build
// from Debian's linux-source with a committed config fragment.
package vmm
