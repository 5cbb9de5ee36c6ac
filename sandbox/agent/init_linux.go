package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"microbox/sandbox/protocol"
)

// Layout inside the guest.
const (
	imageRoot  = "/mnt/root"  // the overlay of the language's layer on the base; steps chroot here
	workDir    = "/box"       // the job's work dir inside imageRoot
	privateDir = "/run/agent" // agent-only files (stdin), outside the chroot
	boxUID     = 1000         // the unprivileged uid/gid that runs user code
	boxGID     = 1000
)

// Main is the agent's entry point. As PID 1 it never returns.
func Main() {
	if len(os.Args) == 2 && os.Args[1] == spawnerArg {
		runSpawner()
		return
	}
	if os.Getpid() != 1 {
		fmt.Fprintln(os.Stderr, "microbox-agent: this is the init of a microbox guest; it runs as PID 1 inside the VM, not on a host")
		os.Exit(2)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil)).With("component", "agent")
	a, err := setup(log)
	if err != nil {
		log.Error("guest setup failed", "err", err)
		fatal()
	}
	a.serve()
}

// fatal ends the VM. PID 1 must not exit (the kernel would panic with a less
// useful message); the VMM runs with -no-reboot, so a reboot stops it.
func fatal() {
	unix.Sync()
	_ = unix.Reboot(unix.LINUX_REBOOT_CMD_RESTART)
	select {}
}

type agent struct {
	log     *slog.Logger
	spawner *spawner
	port    string
	kernel  string
	jobs    int
	// hello is the Hello frame's payload, encoded once: a restored clone
	// answers its first message with it, and every code path a clone runs
	// first costs translation time under TCG.
	hello []byte
	// urandom stays open for resume's ioctls, for the same reason.
	urandom *os.File
	// session is set once the host made this VM a session's.
	session *session
}

type mountSpec struct {
	source, target, fstype string
	flags                  uintptr
	data                   string
}

func setup(log *slog.Logger) (*agent, error) {
	const nodev = unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC
	early := []mountSpec{
		{"proc", "/proc", "proc", nodev, ""},
		{"sysfs", "/sys", "sysfs", nodev, ""},
		{"devtmpfs", "/dev", "devtmpfs", unix.MS_NOSUID | unix.MS_NOEXEC, "mode=0755"},
		{"tmpfs", "/run", "tmpfs", nodev, "mode=0700"},
		{"cgroup2", cgroupRoot, "cgroup2", nodev, ""},
	}
	if err := mountAll(early); err != nil {
		return nil, err
	}
	// A guest OOM must kill the program, never PID 1.
	if err := os.WriteFile("/proc/self/oom_score_adj", []byte("-1000"), 0); err != nil {
		return nil, fmt.Errorf("oom_score_adj: %w", err)
	}
	// Inherited by every step: nothing run from here can gain privileges
	// through setuid files or file capabilities. The flag is per thread, so
	// it is set on all of the runtime's threads (new ones are cloned from
	// them); the exec helper sets it again on the thread that execs.
	if _, _, errno := syscall.AllThreadsSyscall(syscall.SYS_PRCTL, unix.PR_SET_NO_NEW_PRIVS, 1, 0); errno != 0 {
		return nil, fmt.Errorf("no_new_privs: %w", errno)
	}
	if err := os.MkdirAll(privateDir, 0o700); err != nil {
		return nil, err
	}
	if err := mountRoot(); err != nil {
		return nil, err
	}
	if err := populateDev(imageRoot + "/dev"); err != nil {
		return nil, err
	}
	if err := enableControllers(); err != nil {
		return nil, err
	}
	port, err := findPort(protocol.PortName, 10*time.Second)
	if err != nil {
		return nil, err
	}
	var uts unix.Utsname
	_ = unix.Uname(&uts)
	kernel := unix.ByteSliceToString(uts.Release[:])
	hello, err := json.Marshal(protocol.Hello{Version: protocol.Version, Kernel: kernel})
	if err != nil {
		return nil, err
	}
	urandom, err := os.OpenFile("/dev/urandom", os.O_WRONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	a := &agent{log: log, port: port, kernel: kernel, hello: hello, urandom: urandom}
	if a.spawner, err = startSpawner(); err != nil {
		return nil, err
	}
	reap(func() int { return a.spawner.cmd.Process.Pid }, func(ws unix.WaitStatus) {
		// Nothing can start a program without it, and whatever killed
		// it may kill its successor: end the VM, the host sees why.
		log.Error("the spawner died", "status", ws)
		fatal()
	})
	return a, nil
}

// mountRoot mounts the program's root at imageRoot: the base and the
// language's layer, two read-only ext4 disks found by their serials, merged
// by a read-only overlay (lower dirs only: nothing is ever written to it;
// the writable places are tmpfs mounted on it per job), then a proc and a
// /dev of its own inside.
func mountRoot() error {
	const ro = unix.MS_RDONLY | unix.MS_NOSUID | unix.MS_NODEV
	const nodev = unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC
	const base, layer = "/mnt/base", "/mnt/layer"
	deadline := time.Now().Add(10 * time.Second)
	var ms []mountSpec
	for _, d := range []struct{ serial, dir string }{
		{protocol.BaseDiskSerial, base}, {protocol.LayerDiskSerial, layer},
	} {
		dev, err := findDisk(d.serial, deadline)
		if err != nil {
			return err
		}
		ms = append(ms, mountSpec{dev, d.dir, "ext4", ro, ""})
	}
	ms = append(ms,
		// Upper layers first: the layer's files hide the base's.
		mountSpec{"overlay", imageRoot, "overlay", ro, "lowerdir=" + layer + ":" + base},
		// hidepid: the program sees only its own processes, not PID 1's.
		mountSpec{"proc", imageRoot + "/proc", "proc", nodev, "hidepid=invisible"},
		mountSpec{"tmpfs", imageRoot + "/dev", "tmpfs", unix.MS_NOSUID | unix.MS_NOEXEC, "mode=0755,size=64k"},
	)
	return mountAll(ms)
}

// findDisk finds the device of the virtio-blk disk with the given serial:
// with devtmpfs and no udev there is no /dev/disk/by-id, so the serial is
// read from sysfs.
func findDisk(serial string, deadline time.Time) (string, error) {
	return findDevice("/sys/block/vd*/serial", serial, deadline)
}

// findDevice waits for a sysfs attribute file matching pattern whose
// content is want, and returns the /dev node of the device it belongs to
// (the name of the file's folder) once that exists.
func findDevice(pattern, want string, deadline time.Time) (string, error) {
	for {
		paths, _ := filepath.Glob(pattern)
		for _, p := range paths {
			b, err := os.ReadFile(p)
			if err == nil && strings.TrimSpace(string(b)) == want {
				dev := "/dev/" + filepath.Base(filepath.Dir(p))
				if err := waitFor(dev, time.Until(deadline)); err != nil {
					return "", err
				}
				return dev, nil
			}
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("no device under %s is %q", pattern, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func mountAll(ms []mountSpec) error {
	for _, m := range ms {
		if err := os.MkdirAll(m.target, 0o755); err != nil && !errors.Is(err, unix.EROFS) {
			return fmt.Errorf("mkdir %s: %w", m.target, err)
		}
		if err := unix.Mount(m.source, m.target, m.fstype, m.flags, m.data); err != nil {
			return fmt.Errorf("mount %s on %s: %w", m.fstype, m.target, err)
		}
	}
	return nil
}

// populateDev fills the program's /dev with harmless devices only: never the
// agent's console port, which would let a program forge results.
func populateDev(dev string) error {
	nodes := []struct {
		name         string
		major, minor uint32
	}{{"null", 1, 3}, {"zero", 1, 5}, {"full", 1, 7}, {"random", 1, 8}, {"urandom", 1, 9}}
	for _, n := range nodes {
		p := filepath.Join(dev, n.name)
		if err := unix.Mknod(p, unix.S_IFCHR|0o666, int(unix.Mkdev(n.major, n.minor))); err != nil {
			return fmt.Errorf("mknod %s: %w", p, err)
		}
		if err := os.Chmod(p, 0o666); err != nil { // mknod honours the umask
			return err
		}
	}
	links := map[string]string{"fd": "/proc/self/fd", "stdin": "/proc/self/fd/0", "stdout": "/proc/self/fd/1", "stderr": "/proc/self/fd/2"}
	for name, target := range links {
		if err := os.Symlink(target, filepath.Join(dev, name)); err != nil {
			return err
		}
	}
	return os.Mkdir(filepath.Join(dev, "shm"), 0o1777)
}

func waitFor(path string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		if _, err := os.Stat(path); err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not appear within %v", path, timeout)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// findPort finds the device of the named virtio-console port. With devtmpfs
// and no udev there is no /dev/virtio-ports link, so the name is read from
// sysfs.
func findPort(name string, timeout time.Duration) (string, error) {
	return findDevice("/sys/class/virtio-ports/*/name", name, time.Now().Add(timeout))
}

// patientReader turns the port's EOF (no host connected) into a wait: the
// agent is PID 1 and must outlive any host connection, without spinning.
type patientReader struct{ f *os.File }

func (r patientReader) Read(p []byte) (int, error) {
	for {
		n, err := r.f.Read(p)
		if n > 0 {
			return n, nil
		}
		if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, unix.EAGAIN) && !errors.Is(err, unix.EINTR) {
			return 0, err
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (a *agent) serve() {
	f, err := os.OpenFile(a.port, os.O_RDWR, 0)
	if err != nil {
		a.log.Error("open port", "port", a.port, "err", err)
		fatal()
	}
	r := patientReader{f}
	w := protocol.NewWriter(f)
	a.log.Info("serving", "port", a.port)
	for {
		f, err := protocol.ReadFrame(r, protocol.MaxHostPayload)
		if err != nil {
			// The stream is out of step; there is no way to find the next
			// frame boundary, so keep reading: the host will time out.
			a.log.Error("read frame", "err", err)
			time.Sleep(20 * time.Millisecond)
			continue
		}
		typ, payload := f.Type, f.Payload
		if f.Stream != 0 {
			if a.session == nil {
				a.log.Warn("frame for a session stream, but this VM is no session's", "type", typ, "stream", f.Stream)
				continue
			}
			a.session.handle(f)
			continue
		}
		switch typ {
		case protocol.TypePing:
			if err := w.Frame(protocol.TypeHello, 0, a.hello); err != nil {
				a.log.Error("write hello", "err", err)
			}
		case protocol.TypeJob:
			a.handleJob(w, payload)
		case protocol.TypeSession:
			if err := a.startSession(w, payload); err != nil {
				a.log.Error("session", "err", err)
				_ = w.Frame(protocol.TypeError, 0, []byte("session: "+err.Error()))
				continue
			}
			_ = w.JSON(protocol.TypeDone, 0, protocol.Done{})
		case protocol.TypeResume:
			if err := resume(a.urandom, payload); err != nil {
				a.log.Error("resume", "err", err)
				_ = w.Frame(protocol.TypeError, 0, []byte("resume: "+err.Error()))
				continue
			}
			if err := w.Frame(protocol.TypeHello, 0, a.hello); err != nil {
				a.log.Error("write hello", "err", err)
			}
		default:
			a.log.Warn("unexpected frame from host", "type", typ)
		}
	}
}

func (a *agent) handleJob(w *protocol.Writer, payload []byte) {
	var job protocol.Job
	if err := json.Unmarshal(payload, &job); err != nil {
		_ = w.Frame(protocol.TypeError, 0, []byte("decode job: "+err.Error()))
		return
	}
	a.jobs++
	res, err := a.runJob(&job, w)
	if err != nil {
		a.log.Error("job failed", "job", job.ID, "err", err)
		_ = w.Frame(protocol.TypeError, 0, []byte(err.Error()))
		return
	}
	if err := w.JSON(protocol.TypeResult, 0, res); err != nil {
		a.log.Error("write result", "job", job.ID, "err", err)
	}
}
