// Package agent is the guest side of microbox: the program that runs as PID 1
// inside every microVM. It mounts the language's root image read-only with
// tmpfs work dirs over it, finds its virtio-console port by name, and serves
// jobs framed by package protocol. Each step of a job runs as an unprivileged
// uid, chrooted into the image, with no_new_privs, rlimits and a cgroup v2
// group of its own whose statistics (CPU time of every child, OOM kills,
// peak memory) decide which limit ended it. A multi-test job runs its Run
// step once per test, each in a work dir restored from a private, read-only
// copy of the one the compile left (tests_linux.go).
//
// The same binary doubles as the exec helper that sets rlimits, chroot and
// credentials in the child between fork and exec, because Go's os/exec cannot
// set rlimits on a child.
package agent
