package jailer

import "sort"

// The seccomp allowlist for the QEMU process (default action: kill). It is
// installed by the jail's init step before QEMU's execve, so it must cover
// the dynamic loader, library constructors, the loading of
// accel-tcg-x86_64.so and QEMU's own set-up, not only the running VM. It
// sits on top of QEMU's own -sandbox filter, which QEMU installs itself
// (hence seccomp and prctl below).

// tcgSyscalls: measured (see jailer/trace/trace-qemu), sorted, one per line
// with a short comment where the purpose is not obvious: every name in
// jailer/trace/qemu-tcg-syscalls.txt but io_uring_setup (which gets ENOSYS:
// see enosysSyscalls), plus getpid, tgkill and rt_sigreturn (signals no
// traced run sent) and epoll_ctl and epoll_pwait (see epoll_create1), and nanosleep and sched_yield: the filter is loaded
// on the exec thread alone, but the jail init's Go runtime still runs on
// that thread until execve. seccomp_list_test.go keeps the list equal to
// the trace with those changes.
var tcgSyscalls = []string{
	"accept4",    // the agent and QMP sockets (server=on) take the host's connection
	"access",     // loader; QEMU looks up qemu-bundle, qboot.rom, accel-tcg-x86_64.so
	"arch_prctl", // glibc: thread pointer (ARCH_SET_FS) at start
	"bind",
	"brk",
	"clock_nanosleep", // g_usleep: the RCU thread, call_rcu
	"clone",           // threads, once -sandbox has made clone3 fail with ENOSYS
	"clone3",          // threads created before -sandbox is installed
	"close",
	// With io_uring refused, each AioContext sets up an epoll fd monitor
	// (traced) and switches to it above 64 watched fds (not reached by
	// any traced run, so epoll_ctl and epoll_pwait are reasoned, from
	// QEMU 7.2's util/fdmon-epoll.c).
	"epoll_create1",
	"epoll_ctl",
	"epoll_pwait",
	"eventfd2",   // event notifiers: main loop, AioContexts, virtio-mmio ioeventfds
	"execve",     // the jail's init execs QEMU with the filter already on
	"exit",       // a thread ends (idle block thread-pool workers time out)
	"exit_group", // QEMU's own exit: QMP quit, guest panic/reboot (-no-reboot), start-up error
	"fadvise64",  // restore: the incoming migration stream's fd (posix_fadvise)
	"fchdir",     // libndctl/libpmem constructor walking /sys/bus/nd
	"fcntl",      // O_NONBLOCK, FD_CLOEXEC; F_OFD_SETLK/GETLK image locking
	"fstatfs",    // snapshot RAM backend: the memfd's page size (qemu_fd_getpagesize)
	"futex",
	"get_mempolicy", // libnuma constructor
	"getdents64",    // libnuma and libndctl constructors list /sys folders
	"getpeername",   // chardev socket set-up
	"getpid",        // not traced: glibc's pthread_kill (getpid, tgkill) kicks a vCPU thread
	"getrandom",     // glib, gnutls, QEMU's guest-random seed
	"getsockname",   // chardev socket set-up
	"getsockopt",    // fd: migration URI: is the passed fd a socket (SO_TYPE)
	"gettid",
	"listen",
	"lseek",
	"madvise",      // glibc free, thread stacks (MADV_DONTNEED), QEMU RAM hints
	"memfd_create", // QEMU probes memfd support (MFD_ALLOW_SEALING, MFD_HUGETLB) at start
	"mmap",
	"mprotect",
	"mremap",
	"munmap",
	// Not traced: the jail init's Go runtime, on the exec thread, between
	// loading this filter and execve (its lock and scheduler paths sleep
	// in usleep and spin in osyield). CI saw the init killed by SIGSYS on
	// sched_yield, which QEMU's start reported as "qemu exited during
	// start" with an empty log.
	"nanosleep",
	"newfstatat",
	"openat",
	"poll",  // glib GMainContext of the monitor's I/O thread
	"ppoll", // QEMU's main loop and AioContexts
	"prctl", // PR_SET_NO_NEW_PRIVS (for -sandbox), PR_SET_TIMERSLACK, PR_MCE_KILL
	"pread64",
	"preadv",    // block I/O on the guest's root image (thread pool)
	"prlimit64", // glibc getrlimit (RLIMIT_STACK, RLIMIT_NOFILE)
	"read",
	"readlink", // /proc/self/exe: QEMU finds its data and module folders
	"readv",    // restore: reads the migration stream
	"recvmsg",  // chardev sockets (QMP, agent), which accept passed fds
	"rseq",     // glibc registers restartable sequences per thread
	"rt_sigaction",
	"rt_sigprocmask",
	// Not measured (no signal reached a handler in any run): returning from
	// a signal handler. QEMU has a SIGBUS handler, and a vCPU kick
	// (SIG_IPI) is a handled signal.
	"rt_sigreturn",
	"sched_getaffinity", // glibc/libnuma: the CPU count
	"sched_yield",       // not traced: the jail init's Go runtime, see nanosleep
	"seccomp",           // QEMU installs its own -sandbox filter (and probes the actions)
	"sendmsg",           // chardev sockets: QMP replies, agent frames
	"set_mempolicy",     // libnuma constructor
	"set_robust_list",   // glibc thread start
	"set_tid_address",   // glibc start
	"signalfd4",         // main loop takes SIGBUS, SIGALRM, SIGIO through a signalfd
	"socket",            // AF_UNIX only: the agent and QMP listening sockets
	"statfs",            // libselinux constructor looks for selinuxfs
	"sysinfo",           // host RAM size at start
	"tgkill",            // not traced: pthread_kill, see getpid
	"unlink",            // stale agent/QMP socket paths before bind
	"write",
	"writev", // the console log (-chardev file), QEMU's log
}

// kvmExtraSyscalls: NOT measurable here (no hardware virtualization);
// UNVERIFIED. What QEMU additionally calls under -accel kvm, reasoned from
// QEMU 7.2's accel/kvm/kvm-all.c and glibc 2.36 (Debian 12). The rest of
// what KVM needs is already in tcgSyscalls: openat (/dev/kvm), mmap
// (MAP_SHARED kvm_run areas), eventfd2 (ioeventfds, irqfds), rt_sigaction
// and rt_sigprocmask (kvm_init_cpu_signals), and for the vCPU kick --
// qemu_cpu_kick_thread's pthread_kill(SIG_IPI), which glibc makes as getpid
// then tgkill (checked with strace here), and the return from the SIG_IPI
// handler, rt_sigreturn -- which tcgSyscalls holds for the jail init.
// Not listed: rt_sigtimedwait and rt_sigpending, which kvm_eat_signals uses
// only on kernels without KVM_CAP_IMMEDIATE_EXIT (before Linux 4.11).
var kvmExtraSyscalls = []string{
	// Every KVM operation: KVM_CREATE_VM, KVM_CREATE_VCPU, KVM_RUN,
	// KVM_SET_USER_MEMORY_REGION, KVM_IOEVENTFD, KVM_IRQFD, registers.
	// Under TCG QEMU never calls ioctl at all (not once in the traces).
	"ioctl",
}

// Syscalls is the allowlist for QEMU's process, with kvm under -accel kvm:
// sorted and without duplicates.
func Syscalls(kvm bool) []string {
	seen := map[string]bool{}
	var out []string
	add := func(names []string) {
		for _, n := range names {
			if !seen[n] {
				seen[n] = true
				out = append(out, n)
			}
		}
	}
	add(tcgSyscalls)
	if kvm {
		add(kvmExtraSyscalls)
	}
	sort.Strings(out)
	return out
}
