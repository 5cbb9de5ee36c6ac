// Package jailer confines each VMM process the way Firecracker's jailer
// does, adapted to a dynamically linked QEMU: a sanitized start, new mount,
// pid, net, ipc and uts namespaces, a tmpfs root holding only what the VM
// needs (bind-mounted read-only) entered with pivot_root, a cgroup (v1 or v2,
// package cgroup), rlimits, an unprivileged uid per VM, no
// capabilities, no_new_privs, and a seccomp allowlist measured from QEMU
// (see trace/), installed last before exec.
//
// The set-up runs in a re-executed copy of the calling binary (MaybeInit),
// so every step runs in the new namespaces and reports by name if it fails.
package jailer
