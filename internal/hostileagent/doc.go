// Package hostileagent tests the host against a hostile guest: a guest
// agent (./agent, built only under the hostileagent tag, never packed
// into the real initramfs) that sends frames past the cap, a frame that
// never ends, garbage, a wrong protocol version, a result before the job,
// frames after the result, output without end, an absurd Hello; that
// stops reading the console; that exits as PID 1. For each, the host kills
// the VM in bounded time and memory, the job ends Internal Error with a
// message, and the host goes on serving. fault_test.go kills QEMU under a
// running job; guest_fault_test.go hangs the agent, closes the console
// socket, and has QEMU's host cgroup OOM-kill it, each followed by a check
// that nothing leaked, fds included. cache_fault_test.go and
// image_fault_test.go fill the cache disk while a snapshot is stored and
// while a language image is built.
package hostileagent
