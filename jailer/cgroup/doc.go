// Package cgroup is a jail's cgroup: memory (with swap held to none), pids
// and a CPU quota for one jailed process, on a v1 host (every controller
// in its own hierarchy) or a v2 host (one unified tree) alike, through
// runc's cgroups library. Every jail's cgroup sits under /microbox, named
// by the jail's id.
//
// It is apart from package jailer, which links libseccomp through cgo, so
// that it builds static (CGO_ENABLED=0): a probe runs it as PID 1 of a
// guest VM, whose kernel is cgroup v2, to test it against a real v2
// kernel on hosts (such as CI's) whose cgroups are v1.
package cgroup
