package vmm

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"microbox/internal/logtail"
	"microbox/jailer"
	"microbox/sandbox/protocol"
)

// Defaults for Config fields left zero.
const (
	// DefaultMemoryMiB is guest RAM: above the largest run memory limit
	// (512 MB, Judge0's maximum) plus the agent and the page cache the
	// language runtime needs. QEMU maps it lazily, so an idle guest costs
	// far less on the host.
	DefaultMemoryMiB = 768
	DefaultVCPUs     = 2
	// DefaultTBSizeMiB bounds TCG's translation cache per VM (QEMU's own
	// default is 1 GiB, which would dominate host memory per VM).
	DefaultTBSizeMiB = 64
	// DefaultBootTimeout is how long a VM may take to boot to agent-ready.
	// Under TCG a boot takes about a second; a loaded host needs slack.
	DefaultBootTimeout = 60 * time.Second
)

// Errors a caller can act on.
var (
	ErrQEMUMissing  = errors.New("qemu-system-x86_64 not found: install Debian's qemu-system-x86 package (apt-get install qemu-system-x86)")
	ErrAgentVersion = errors.New("guest agent speaks another protocol version")
	ErrClosed       = errors.New("vm closed")
)

// Config describes one microVM.
type Config struct {
	// QEMU is the qemu-system-x86_64 binary; empty means look it up in PATH.
	QEMU string
	// Kernel is the guest kernel (an uncompressed vmlinux with a PVH note).
	Kernel string
	// Initramfs holds the agent as /init (see BuildInitramfs).
	Initramfs string
	// Image is the language's layer and Base the shared base image under
	// it, both ext4, attached read-only as virtio-blk disks with the
	// serials protocol.LayerDiskSerial and protocol.BaseDiskSerial; the
	// agent stacks them with overlayfs into the guest's root.
	Image string
	Base  string
	// MemoryMiB is guest RAM; 0 means DefaultMemoryMiB.
	MemoryMiB int
	// VCPUs is the number of virtual CPUs; 0 means DefaultVCPUs.
	VCPUs int
	// Accel is the accelerator; "" or auto resolves per host.
	Accel Accel
	// TBSizeMiB bounds TCG's translation cache; 0 means DefaultTBSizeMiB.
	TBSizeMiB int
	// BootTimeout bounds start to agent-ready; 0 means DefaultBootTimeout.
	BootTimeout time.Duration
	// RunDir is where the VM's private folder (sockets, console log) is
	// made; empty means os.TempDir(). The folder is removed by Close.
	RunDir string
	// Host is where KVM support is looked for; zero means this host.
	Host Host
	// Jail confines QEMU (namespaces, pivot_root, cgroup, uid, seccomp);
	// nil runs it unconfined, for debugging only.
	Jail *Jail
	// Logger receives lifecycle messages; nil discards them.
	Logger *slog.Logger

	// SnapshotSalt is hashed into SnapshotKey: what else went into a
	// snapshot, such as the program that warmed it.
	SnapshotSalt string

	// Set by BuildSnapshot and Restore only.
	ram       *os.File // backs guest RAM (a memfd); nil means anonymous memory
	ramShared bool     // the guest writes through to ram (a snapshot's source)
	incoming  bool     // start paused, waiting for a migration stream
}

// VM is a running microVM with its agent ready.
type VM struct {
	// Accel is the accelerator it runs under (never auto).
	Accel Accel
	// BootTime is from the QEMU process start to the agent's Hello.
	BootTime time.Duration
	// Args is QEMU's command line, for diagnostics and tests.
	Args []string

	pid    int
	cfg    Config       // the machine it runs, defaults filled: RestoreFrom starts its like
	kill   func() error // ends QEMU, waits for it, frees its jail
	dir    string
	qmp    *QMP
	agent  net.Conn
	log    *slog.Logger
	exited chan struct{} // closed when the QEMU process is reaped
	status func() string // how QEMU ended, once exited is closed
	stop   func() bool   // detaches the context watcher; guarded by mu

	mu     sync.Mutex // guards qmp, agent and closed against Close from ctx
	closed bool
	paused bool // a restored or paused clone: Resume runs it
	// ignoreShared: migrations of this VM skip shared RAM (a clone, which
	// set the capability to load its snapshot), and so must its restores.
	ignoreShared bool
	closeOnce    sync.Once
	closeErr     error
}

// adopt records a connection made during Start, or closes it when the VM was
// closed meanwhile (its context was cancelled).
func (vm *VM) adopt(set func()) bool {
	vm.mu.Lock()
	defer vm.mu.Unlock()
	if vm.closed {
		return false
	}
	set()
	return true
}

func (c *Config) withDefaults() (Config, error) {
	cfg := *c
	if cfg.MemoryMiB == 0 {
		cfg.MemoryMiB = DefaultMemoryMiB
	}
	if cfg.VCPUs == 0 {
		cfg.VCPUs = DefaultVCPUs
	}
	if cfg.TBSizeMiB == 0 {
		cfg.TBSizeMiB = DefaultTBSizeMiB
	}
	if cfg.BootTimeout == 0 {
		cfg.BootTimeout = DefaultBootTimeout
	}
	if cfg.RunDir == "" {
		cfg.RunDir = os.TempDir()
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.QEMU == "" {
		p, err := exec.LookPath("qemu-system-x86_64")
		if err != nil {
			return cfg, ErrQEMUMissing
		}
		cfg.QEMU = p
	}
	for _, f := range []struct{ what, path string }{
		{"guest kernel", cfg.Kernel}, {"agent initramfs", cfg.Initramfs}, {"language layer", cfg.Image}, {"base image", cfg.Base},
	} {
		if f.path == "" {
			return cfg, fmt.Errorf("vm config: no %s given", f.what)
		}
		if _, err := os.Stat(f.path); err != nil {
			return cfg, fmt.Errorf("%s: %w", f.what, err)
		}
	}
	a, err := cfg.Host.Resolve(cfg.Accel)
	if err != nil {
		return cfg, err
	}
	cfg.Accel = a
	return cfg, nil
}

// kernelArgs is the guest command line. QEMU's microvm appends the
// virtio-mmio device list itself (auto-kernel-cmdline).
func kernelArgs(accel Accel) string {
	args := []string{
		"console=ttyS0",
		"quiet",    // the serial console is slow under TCG
		"panic=-1", // a panic reboots at once, and -no-reboot ends QEMU
		"reboot=t", // microvm has no ACPI or keyboard controller to reset with
		"rdinit=/init",
		"nomodule",
		"random.trust_cpu=on",
		// Under TCG the vCPUs' TSCs drift apart and the kernel would fall back
		// to jiffies, making every measured time coarse; KVM uses kvm-clock.
		"tsc=reliable",
		// The boot-time check that the timer interrupt arrives is timed: a
		// TCG guest on a loaded host misses it and panics ("IO-APIC +
		// timer doesn't work"), seen in CI-like runs here.
		"no_timer_check",
	}
	if khz := hostTSCkHz(); accel == AccelTCG && khz > 0 {
		// Under KVM the guest keeps time by kvm-clock; under TCG only the
		// TSC can keep it, if the kernel is told its rate (see hostTSCkHz).
		args = append(args, fmt.Sprintf("tsc_early_khz=%d", khz))
	}
	return strings.Join(args, " ")
}

// qemuArgs builds the command line. Never a -netdev: guests have no network.
func qemuArgs(cfg Config, dir string) []string {
	// No page merging (KSM) of guest memory: pages merged across
	// tenants' VMs leak through copy-on-write timing, a known side
	// channel. A memory backend has its own switch (merge=off below).
	machine := "microvm,acpi=off,isa-serial=on,mem-merge=off"
	if cfg.ram != nil {
		machine += ",memory-backend=ram"
	}
	args := []string{
		// QEMU's own seccomp filter: no obsolete syscalls, no setuid,
		// no fork or exec, no scheduler or affinity changes.
		"-sandbox", "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny",
		"-M", machine,
		"-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
		"-m", strconv.Itoa(cfg.MemoryMiB),
		"-smp", strconv.Itoa(cfg.VCPUs),
	}
	if cfg.ram != nil {
		// The memfd is the first passed descriptor. QEMU 7.2 takes a file
		// backend only by path; /proc/self/fd/N reopens the memfd itself.
		fd := 3 // exec.Cmd.ExtraFiles
		if cfg.Jail != nil {
			fd = jailer.FirstExtraFD
		}
		share := "off" // a clone: private copy-on-write of the template
		if cfg.ramShared {
			share = "on"
		}
		args = append(args, "-object", fmt.Sprintf("memory-backend-file,id=ram,size=%dM,mem-path=/proc/self/fd/%d,share=%s,merge=off", cfg.MemoryMiB, fd, share))
	}
	switch cfg.Accel {
	case AccelKVM:
		args = append(args, "-accel", "kvm", "-cpu", "host")
	default:
		args = append(args, "-accel", fmt.Sprintf("tcg,thread=multi,tb-size=%d", cfg.TBSizeMiB), "-cpu", "max")
	}
	args = append(args,
		"-kernel", cfg.Kernel,
		"-initrd", cfg.Initramfs,
		"-append", kernelArgs(cfg.Accel),
		"-chardev", "file,id=console,path="+filepath.Join(dir, "console.log"),
		"-serial", "chardev:console",
		// The base first: every VM opens the same base file, whose pages
		// the host's page cache holds once for all of them.
		"-drive", "id=base,file="+cfg.Base+",format=raw,if=none,readonly=on",
		"-device", "virtio-blk-device,drive=base,serial="+protocol.BaseDiskSerial,
		"-drive", "id=layer,file="+cfg.Image+",format=raw,if=none,readonly=on",
		"-device", "virtio-blk-device,drive=layer,serial="+protocol.LayerDiskSerial,
		"-object", "rng-random,id=rng,filename=/dev/urandom",
		"-device", "virtio-rng-device,rng=rng",
		"-device", "virtio-serial-device,max_ports=2",
		"-chardev", "socket,id=agent,path="+filepath.Join(dir, "agent.sock")+",server=on,wait=off",
		"-device", "virtserialport,chardev=agent,name="+protocol.PortName,
		"-qmp", "unix:"+filepath.Join(dir, "qmp.sock")+",server=on,wait=off",
	)
	if cfg.incoming {
		args = append(args, "-incoming", "defer")
	}
	return args
}

// Start boots a VM and returns once its agent has answered. Cancelling ctx
// at any time, during Start or after, kills the VM and removes its files.
func Start(ctx context.Context, c Config) (*VM, error) {
	cfg, err := c.withDefaults()
	if err != nil {
		return nil, err
	}
	vm, start, err := startProcess(ctx, cfg)
	if err != nil {
		return nil, err
	}
	deadline := start.Add(cfg.BootTimeout)
	if err := vm.connectAgent(deadline); err != nil {
		return nil, vm.fail(ctx, err)
	}
	hello, err := vm.handshake(deadline)
	if err != nil {
		return nil, vm.fail(ctx, err)
	}
	vm.BootTime = time.Since(start)
	vm.log.Debug("vm ready", "accel", vm.Accel, "boot", vm.BootTime, "kernel", hello.Kernel, "dir", vm.dir)
	return vm, nil
}

// startProcess makes the VM's folder, starts QEMU (jailed unless cfg.Jail
// is nil) and connects to its QMP socket. From here on, cancelling ctx
// closes the VM.
func startProcess(ctx context.Context, cfg Config) (*VM, time.Time, error) {
	if err := ctx.Err(); err != nil {
		return nil, time.Time{}, err
	}
	// The owner's pid in the name lets CleanStale tell a dead worker's
	// folders from a live one's.
	dir, err := os.MkdirTemp(cfg.RunDir, fmt.Sprintf("microbox-vm-%d-", os.Getpid()))
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("vm folder: %w", err)
	}
	// A Unix socket address holds 108 bytes: a deep RunDir would make
	// QEMU's sockets fail to bind, or the host's connect fail later.
	if n := len(filepath.Join(dir, "agent.sock")); n >= 108 {
		_ = os.Remove(dir)
		return nil, time.Time{}, fmt.Errorf("vm folder %s is too deep for Unix socket paths (%d bytes, at most 107): use a shorter RunDir", dir, n)
	}
	vm := &VM{Accel: cfg.Accel, cfg: cfg, dir: dir, log: cfg.Logger, exited: make(chan struct{})}
	vm.Args = append([]string{cfg.QEMU}, qemuArgs(cfg, dir)...)
	qlog, err := os.Create(filepath.Join(dir, "qemu.log"))
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, time.Time{}, err
	}
	start := time.Now()
	err = vm.launch(cfg, qlog)
	qlog.Close()
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, time.Time{}, err
	}
	stop := context.AfterFunc(ctx, func() { _ = vm.Close() })
	vm.mu.Lock()
	vm.stop = stop
	vm.mu.Unlock()

	qmp, err := vm.dialQMP(start.Add(cfg.BootTimeout))
	if err != nil {
		return nil, start, vm.fail(ctx, fmt.Errorf("qmp: %w", err))
	}
	if !vm.adopt(func() { vm.qmp = qmp }) {
		qmp.Close()
		return nil, start, vm.fail(ctx, ErrClosed)
	}
	return vm, start, nil
}

// connectAgent connects the host's end of the agent's port.
func (vm *VM) connectAgent(deadline time.Time) error {
	agent, err := vm.dial("agent.sock", deadline)
	if err != nil {
		return fmt.Errorf("agent socket: %w", err)
	}
	if !vm.adopt(func() { vm.agent = agent }) {
		agent.Close()
		return ErrClosed
	}
	return nil
}

// fail closes a VM that could not be started and returns err with the
// context's error and the VM's last log lines added.
func (vm *VM) fail(ctx context.Context, err error) error {
	if ctxErr := ctx.Err(); ctxErr != nil {
		err = fmt.Errorf("%w (%v)", ctxErr, err)
	}
	diag := vm.diagnostics()
	_ = vm.Close()
	if diag != "" {
		err = fmt.Errorf("%w\n%s", err, diag)
	}
	return err
}

// launch starts QEMU, jailed unless cfg.Jail is nil, and arranges for
// vm.exited to close when it ends and vm.kill to end it.
func (vm *VM) launch(cfg Config, qlog *os.File) error {
	if cfg.Jail == nil {
		cfg.Logger.Warn("QEMU runs WITHOUT the jailer (--no-jail): for debugging only, never with untrusted code")
		cmd := exec.Command(cfg.QEMU, vm.Args[1:]...)
		cmd.Stdout, cmd.Stderr = qlog, qlog
		cmd.Env = []string{}
		if cfg.ram != nil {
			cmd.ExtraFiles = []*os.File{cfg.ram}
		}
		// Pdeathsig: if this process dies, so does the VM.
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
		if err := cmd.Start(); err != nil {
			return fmt.Errorf("start qemu: %w", err)
		}
		vm.pid = cmd.Process.Pid
		vm.kill = func() error { _ = cmd.Process.Kill(); <-vm.exited; return nil }
		var status string
		vm.status = func() string { <-vm.exited; return status }
		go func() {
			if err := cmd.Wait(); err != nil {
				status = err.Error()
			} else {
				status = "exit status 0"
			}
			close(vm.exited)
		}()
		return nil
	}
	j := cfg.Jail
	uid, err := j.UIDs.Acquire()
	if err != nil {
		return err
	}
	seccomp := j.Seccomp
	if seccomp == nil {
		seccomp = jailer.Syscalls(cfg.Accel == AccelKVM)
	}
	var extra []*os.File
	if cfg.ram != nil {
		extra = []*os.File{cfg.ram}
	}
	jail, err := jailer.Start(jailer.Config{
		ID:       jailer.NewID(filepath.Base(vm.dir)[strings.LastIndex(filepath.Base(vm.dir), "-")+1:]),
		Root:     j.Root,
		Binary:   cfg.QEMU,
		Args:     vm.Args[1:],
		ReadOnly: []string{cfg.Kernel, cfg.Initramfs, cfg.Base, cfg.Image},
		Writable: vm.dir,
		KVM:      cfg.Accel == AccelKVM,
		Proc:     cfg.ram != nil,
		UID:      uid,
		GID:      uid,
		Limits: jailer.Limits{
			Memory:    int64(cfg.MemoryMiB+cfg.TBSizeMiB+j.overheadMiB()) << 20,
			CPUs:      float64(cfg.VCPUs) + 0.5, // the vCPUs plus QEMU's I/O thread
			Pids:      jailPids,
			OpenFiles: 1024,
			FileSize:  64 << 20, // the console log
		},
		Seccomp:    seccomp,
		ExtraFiles: extra,
		Stdout:     qlog,
		Stderr:     qlog,
		Logger:     cfg.Logger,
	})
	if err != nil {
		j.UIDs.Release(uid)
		return err
	}
	vm.pid = jail.Pid()
	vm.kill = func() error {
		err := jail.Close()
		j.UIDs.Release(uid)
		return err
	}
	vm.status = jail.Status
	go func() {
		<-jail.Exited()
		close(vm.exited)
	}()
	return nil
}

// CleanStale removes the VM folders (sockets, console logs) under runDir
// ("" means the temp dir) that a worker which died without closing its VMs
// left behind; folders of live processes are left alone.
func CleanStale(runDir string) ([]string, error) {
	if runDir == "" {
		runDir = os.TempDir()
	}
	dirs, err := filepath.Glob(filepath.Join(runDir, "microbox-vm-*-*"))
	if err != nil {
		return nil, err
	}
	var removed []string
	var errs []error
	for _, d := range dirs {
		owner, _, ok := strings.Cut(strings.TrimPrefix(filepath.Base(d), "microbox-vm-"), "-")
		pid, perr := strconv.Atoi(owner)
		if !ok || perr != nil || pid <= 0 || pid == os.Getpid() || syscall.Kill(pid, 0) == nil {
			continue
		}
		if err := os.RemoveAll(d); err != nil {
			errs = append(errs, err)
			continue
		}
		removed = append(removed, d)
	}
	return removed, errors.Join(errs...)
}

// jailPids bounds QEMU's threads: one per vCPU, the main loop, RCU, and a
// block I/O thread pool that grows on demand.
const jailPids = 128

// Jail configures the jailer for a VM's QEMU process.
type Jail struct {
	// Root holds the jail folders (e.g. /run/microbox/jails).
	Root string
	// UIDs hands each VM an unprivileged uid of its own.
	UIDs *jailer.UIDPool
	// Seccomp is the syscall allowlist; nil means jailer.Syscalls for the
	// accel.
	Seccomp []string
	// OverheadMiB is QEMU's own memory above guest RAM and the TCG
	// translation cache, for the jail's memory cgroup; 0 means 192.
	OverheadMiB int
}

func (j *Jail) overheadMiB() int {
	if j.OverheadMiB == 0 {
		return 192
	}
	return j.OverheadMiB
}

// dial connects to one of the VM's Unix sockets, which QEMU creates shortly
// after it starts.
func (vm *VM) dial(name string, deadline time.Time) (net.Conn, error) {
	path := filepath.Join(vm.dir, name)
	for {
		conn, err := net.Dial("unix", path)
		if err == nil {
			return conn, nil
		}
		select {
		case <-vm.exited:
			return nil, fmt.Errorf("qemu exited during start (%s)%s", vm.status(), signalHint(vm.status()))
		default:
		}
		if time.Now().After(deadline) {
			return nil, err
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func (vm *VM) dialQMP(deadline time.Time) (*QMP, error) {
	conn, err := vm.dial("qmp.sock", deadline)
	if err != nil {
		return nil, err
	}
	conn.Close() // the socket exists now; dialQMP does the handshake
	return dialQMP(filepath.Join(vm.dir, "qmp.sock"), time.Until(deadline))
}

// handshake pings the agent until it answers with its Hello. QEMU holds the
// ping until the guest opens the port, so one ping is enough.
func (vm *VM) handshake(deadline time.Time) (protocol.Hello, error) {
	var hello protocol.Hello
	vm.mu.Lock()
	agent := vm.agent
	vm.mu.Unlock()
	if err := protocol.WriteFrame(agent, protocol.TypePing, 0, nil); err != nil {
		return hello, fmt.Errorf("ping agent: %w", err)
	}
	_ = agent.SetReadDeadline(deadline)
	defer agent.SetReadDeadline(time.Time{})
	f, err := protocol.ReadFrame(agent, protocol.MaxGuestPayload)
	if err != nil {
		select {
		case <-vm.exited:
			return hello, errors.New("the VM stopped before its agent answered")
		default:
		}
		return hello, fmt.Errorf("waiting for the agent: %w", err)
	}
	typ, payload := f.Type, f.Payload
	if typ != protocol.TypeHello {
		return hello, fmt.Errorf("agent answered %s to ping", typ)
	}
	hello, err = protocol.ParseHello(payload)
	if errors.Is(err, protocol.ErrVersion) {
		return hello, fmt.Errorf("%w: agent %d, host %d: rebuild the agent (make agent)", ErrAgentVersion, hello.Version, protocol.Version)
	}
	return hello, err
}

// signalHint explains the signals QEMU can die of before printing anything.
func signalHint(status string) string {
	switch {
	case strings.Contains(status, "bad system call"):
		return ": the seccomp filter killed it; the kernel's audit log (dmesg) names the syscall"
	case strings.Contains(status, "killed"):
		return ": SIGKILL, e.g. its cgroup's OOM killer (dmesg) or a closing worker"
	}
	return ""
}

// diagnostics returns the tail of QEMU's own log and of the guest console.
func (vm *VM) diagnostics() string {
	var b strings.Builder
	for _, name := range []string{"qemu.log", "console.log"} {
		last := logtail.Lines(filepath.Join(vm.dir, name), 15)
		if strings.TrimSpace(last) == "" {
			continue
		}
		fmt.Fprintf(&b, "--- %s (last lines) ---\n%s\n", name, last)
	}
	return strings.TrimRight(b.String(), "\n")
}

// ReconnectAgent drops the agent connection and opens a new one, as a host
// that restarted would. The agent sees EOF in between and must wait for the
// new host, not exit; the caller pings it again.
func (vm *VM) ReconnectAgent() error {
	vm.mu.Lock()
	defer vm.mu.Unlock()
	if vm.closed {
		return ErrClosed
	}
	vm.agent.Close()
	conn, err := net.Dial("unix", filepath.Join(vm.dir, "agent.sock"))
	if err != nil {
		return fmt.Errorf("reconnect agent: %w", err)
	}
	vm.agent = conn
	return nil
}

// Ping asks the agent for its Hello and checks its protocol version.
func (vm *VM) Ping(timeout time.Duration) (protocol.Hello, error) {
	return vm.handshake(time.Now().Add(timeout))
}

// Console returns the last lines of QEMU's log and of the guest console
// (kernel messages and the agent's own log), for diagnostics.
func (vm *VM) Console() string { return vm.diagnostics() }

// Agent is the byte stream to the guest agent.
func (vm *VM) Agent() io.ReadWriter {
	vm.mu.Lock()
	defer vm.mu.Unlock()
	return vm.agent
}

// SetAgentDeadline bounds reads and writes on the agent stream.
func (vm *VM) SetAgentDeadline(t time.Time) error {
	vm.mu.Lock()
	defer vm.mu.Unlock()
	return vm.agent.SetDeadline(t)
}

// QMP is the VM's control connection.
func (vm *VM) QMP() *QMP { return vm.qmp }

// Pid is the QEMU process id.
func (vm *VM) Pid() int { return vm.pid }

// Exited is closed when the QEMU process has ended.
func (vm *VM) Exited() <-chan struct{} { return vm.exited }

// Close kills the VM, waits for the process and removes its folder. A VM is
// throwaway, so there is no graceful shutdown: SIGKILL loses nothing. Safe to
// call more than once and from several goroutines.
func (vm *VM) Close() error {
	vm.closeOnce.Do(func() {
		vm.mu.Lock()
		vm.closed = true
		agent, qmp, stop := vm.agent, vm.qmp, vm.stop
		vm.mu.Unlock()
		if stop != nil {
			stop()
		}
		if agent != nil {
			agent.Close()
		}
		if qmp != nil {
			qmp.Close()
		}
		var killErr error
		if vm.kill != nil {
			killErr = vm.kill()
		}
		vm.closeErr = errors.Join(killErr, os.RemoveAll(vm.dir))
	})
	return vm.closeErr
}
