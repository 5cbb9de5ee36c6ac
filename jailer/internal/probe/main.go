// Command probe stands in for QEMU in the jailer's tests: it is started
// through exactly the same jail (only the binary and argv differ) and tries
// to get through each wall, printing what it found as JSON.
//
//	probe inspect HOSTPID        identity, capabilities, namespaces, files, network
//	probe syscall NAME           make a forbidden system call (expects SIGSYS)
//	probe io_uring -             call io_uring_setup (expects ENOSYS)
//	probe alloc MIB              touch MIB of memory (expects the OOM killer)
//	probe spawn N                start up to N threads (expects the pids limit)
package main

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"runtime"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

type report struct {
	Pid          int      `json:"pid"`
	UID          int      `json:"uid"`
	GID          int      `json:"gid"`
	Groups       []int    `json:"groups"`
	CapEffective uint32   `json:"cap_effective"`
	CapPermitted uint32   `json:"cap_permitted"`
	NoNewPrivs   int      `json:"no_new_privs"`
	Seccomp      int      `json:"seccomp"`
	HostPidSeen  bool     `json:"host_pid_seen"`
	Interfaces   []string `json:"interfaces"`
	Opened       []string `json:"opened"` // host files it could open (should be none)
	RootEntries  []string `json:"root_entries"`
	Hostname     string   `json:"hostname"`
	Threads      int      `json:"threads"`
	Error        string   `json:"error,omitempty"`
}

func main() {
	if len(os.Args) < 3 {
		fmt.Fprintln(os.Stderr, "usage: probe inspect|syscall|alloc|spawn ARG")
		os.Exit(2)
	}
	var r report
	switch os.Args[1] {
	case "inspect":
		inspect(&r, os.Args[2])
	case "syscall":
		// Proof that the probe got this far: a death after this line is
		// the forbidden call's.
		fmt.Println("calling", os.Args[2])
		forbidden(os.Args[2])
		r.Error = "survived " + os.Args[2]
	case "io_uring":
		// Answered ENOSYS by the filter, not allowed and not fatal.
		r.Error = ioUringSetup().Error()
	case "alloc":
		mib, _ := strconv.Atoi(os.Args[2])
		alloc(mib)
		r.Error = "allocated " + os.Args[2] + " MiB"
	case "spawn":
		n, _ := strconv.Atoi(os.Args[2])
		r.Threads = spawn(n)
	}
	_ = json.NewEncoder(os.Stdout).Encode(r)
}

func inspect(r *report, hostPid string) {
	r.Pid, r.UID, r.GID = os.Getpid(), os.Getuid(), os.Getgid()
	r.Groups, _ = os.Getgroups()
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err == nil {
		r.CapEffective, r.CapPermitted = data[0].Effective|data[1].Effective, data[0].Permitted|data[1].Permitted
	}
	nnp, _ := unix.PrctlRetInt(unix.PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0)
	r.NoNewPrivs = nnp
	sc, _ := unix.PrctlRetInt(unix.PR_GET_SECCOMP, 0, 0, 0, 0)
	r.Seccomp = sc
	if pid, err := strconv.Atoi(hostPid); err == nil {
		r.HostPidSeen = unix.Kill(pid, 0) == nil
	}
	ifs, _ := net.Interfaces()
	for _, i := range ifs {
		r.Interfaces = append(r.Interfaces, i.Name+" "+i.Flags.String())
	}
	for _, p := range []string{"/etc/shadow", "/etc/passwd", "/root", "/proc/1/environ", "/sys/kernel", "/dev/sda", "/dev/vda", "/dev/mem"} {
		if f, err := os.Open(p); err == nil {
			r.Opened = append(r.Opened, p)
			f.Close()
		}
	}
	entries, _ := os.ReadDir("/")
	for _, e := range entries {
		r.RootEntries = append(r.RootEntries, e.Name())
	}
	r.Hostname, _ = os.Hostname()
}

// forbidden makes one system call the allowlist must not contain; with the
// filter in place the process dies by SIGSYS before it returns.
func forbidden(name string) {
	switch name {
	case "mount":
		_ = unix.Mount("none", "/", "tmpfs", 0, "")
	case "ptrace":
		_, _, _ = unix.Syscall(unix.SYS_PTRACE, unix.PTRACE_TRACEME, 0, 0)
	case "init_module":
		_, _, _ = unix.Syscall(unix.SYS_INIT_MODULE, 0, 0, 0)
	case "kexec_load":
		_, _, _ = unix.Syscall6(unix.SYS_KEXEC_LOAD, 0, 0, 0, 0, 0, 0)
	case "bpf":
		_, _, _ = unix.Syscall(unix.SYS_BPF, 0, 0, 0)
	case "unshare":
		_ = unix.Unshare(unix.CLONE_NEWUSER)
	}
}

func alloc(mib int) {
	var keep [][]byte
	for i := 0; i < mib; i++ {
		b := make([]byte, 1<<20)
		for j := range b {
			b[j] = byte(j)
		}
		keep = append(keep, b)
	}
	runtime.KeepAlive(keep)
}

// spawn starts OS threads (each a task in the pids cgroup) until n or
// failure, and returns how many it got.
func spawn(n int) int {
	var mu sync.Mutex
	got := 0
	stop := make(chan struct{})
	for i := 0; i < n; i++ {
		started := make(chan bool)
		go func() {
			runtime.LockOSThread() // a new thread each, never returned
			mu.Lock()
			got++
			mu.Unlock()
			started <- true
			<-stop
		}()
		select {
		case <-started:
		case <-time.After(2 * time.Second):
			// Thread creation failed (Go retries clone on EAGAIN
			// and blocks): that is the limit.
			return got
		}
	}
	return got
}
