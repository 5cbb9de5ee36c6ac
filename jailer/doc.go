// Package jailer will confine each VMM process the way Firecracker's jailer
// does: namespaces, pivot_root into a jail folder, a cgroup, rlimits, an
// unprivileged uid and a seccomp allowlist (issue 4). Until then QEMU runs
// unjailed, confined only by its own -sandbox seccomp filter; see DESIGN.md.
package jailer
