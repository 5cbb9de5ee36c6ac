package jailer

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"syscall"

	"golang.org/x/sys/unix"
)

// MaybeInit runs the jail's init step and never returns when this process
// was started as one (argv[1] is the init marker); otherwise it returns at
// once. Call it first thing in main, and in TestMain of packages whose tests
// start jails.
func MaybeInit() {
	if len(os.Args) != 2 || os.Args[1] != initArg {
		return
	}
	runtime.LockOSThread() // per-thread state (no_new_privs, seccomp) must be on the exec thread
	report := os.NewFile(reportFD, "jail-report")
	syscall.CloseOnExec(reportFD)
	fail := func(step string, err error) {
		_ = json.NewEncoder(report).Encode(StepError{Step: step, Err: err.Error()})
		os.Exit(1)
	}
	var spec Spec
	if err := json.NewDecoder(os.NewFile(specFD, "jail-spec")).Decode(&spec); err != nil {
		fail("read spec", err)
	}
	if err := setupJail(&spec); err != nil {
		var se *StepError
		if errors.As(err, &se) {
			fail(se.Step, errors.New(se.Err))
		}
		fail("setup", err)
	}
	if err := closeFDs(firstFD + spec.NFiles); err != nil {
		fail("close fds", err)
	}
	if err := dropPrivileges(&spec); err != nil {
		fail("drop privileges", err)
	}
	if len(spec.Seccomp) > 0 {
		if err := loadSeccomp(spec.Seccomp); err != nil {
			fail("seccomp", err)
		}
	}
	err := unix.Exec(spec.Binary, append([]string{spec.Binary}, spec.Args...), []string{})
	fail("exec "+spec.Binary, err)
}

func step(name string, err error) error {
	if err == nil {
		return nil
	}
	return &StepError{Step: name, Err: err.Error()}
}

// setupJail builds the jail's filesystem and pivots into it. It runs as
// root in fresh mount, pid, net, ipc and uts namespaces.
func setupJail(s *Spec) error {
	// Nothing mounted from here on propagates back to the host.
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return step("make mounts private", err)
	}
	// The jail's root is a tmpfs that exists only in this namespace: when
	// the VM ends, the kernel drops it with the namespace, so no mount can
	// be left on the host by a crash.
	if err := unix.Mount("tmpfs", s.Jail, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=0755,size=1m"); err != nil {
		return step("mount jail tmpfs", err)
	}
	for _, p := range append([]string{s.Binary}, s.ReadOnly...) {
		if err := bindInto(s.Jail, p, true); err != nil {
			return step("bind "+p, err)
		}
	}
	if s.Writable != "" {
		if err := bindInto(s.Jail, s.Writable, false); err != nil {
			return step("bind "+s.Writable, err)
		}
	}
	if err := makeDev(filepath.Join(s.Jail, "dev"), s.KVM); err != nil {
		return step("make /dev", err)
	}
	if s.Proc {
		// subset=pid leaves out /proc/sys, /proc/kcore and the other
		// system-wide files; the pid namespace leaves only the VMM.
		proc := filepath.Join(s.Jail, "proc")
		if err := os.Mkdir(proc, 0o555); err != nil {
			return step("mkdir /proc", err)
		}
		if err := unix.Mount("proc", proc, "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC|unix.MS_RDONLY, "subset=pid"); err != nil {
			return step("mount /proc", err)
		}
	}
	if err := unix.Sethostname([]byte("microbox")); err != nil {
		return step("sethostname", err)
	}
	if err := pivot(s.Jail); err != nil {
		return step("pivot_root", err)
	}
	// The root was writable while it was built; the VMM gets it read-only.
	if err := unix.Mount("", "/", "", unix.MS_REMOUNT|unix.MS_BIND|unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV, ""); err != nil {
		return step("remount root read-only", err)
	}
	return nil
}

// bindInto shows host path p at the same path under jail, read-only if ro.
func bindInto(jail, p string, ro bool) error {
	src, err := filepath.EvalSymlinks(p)
	if err != nil {
		return err
	}
	st, err := os.Stat(src)
	if err != nil {
		return err
	}
	dst := filepath.Join(jail, p)
	if st.IsDir() {
		err = os.MkdirAll(dst, 0o755)
	} else {
		if err = os.MkdirAll(filepath.Dir(dst), 0o755); err == nil {
			var f *os.File
			if f, err = os.OpenFile(dst, os.O_CREATE|os.O_WRONLY, 0o644); err == nil {
				err = f.Close()
			}
		}
	}
	if err != nil {
		return err
	}
	if err := unix.Mount(src, dst, "", unix.MS_BIND, ""); err != nil {
		return err
	}
	flags := uintptr(unix.MS_REMOUNT | unix.MS_BIND | unix.MS_NOSUID | unix.MS_NODEV)
	if ro {
		flags |= unix.MS_RDONLY
	}
	return unix.Mount("", dst, "", flags, "")
}

// makeDev creates the jail's /dev with only what a VMM needs: never a disk,
// a console or a memory device of the host.
func makeDev(dev string, kvm bool) error {
	if err := os.MkdirAll(dev, 0o755); err != nil {
		return err
	}
	if err := unix.Mount("tmpfs", dev, "tmpfs", unix.MS_NOSUID|unix.MS_NOEXEC, "mode=0755,size=64k"); err != nil {
		return err
	}
	nodes := []struct {
		name         string
		major, minor uint32
	}{{"null", 1, 3}, {"zero", 1, 5}, {"urandom", 1, 9}}
	if kvm {
		nodes = append(nodes, struct {
			name         string
			major, minor uint32
		}{"kvm", 10, 232})
	}
	for _, n := range nodes {
		p := filepath.Join(dev, n.name)
		if err := unix.Mknod(p, unix.S_IFCHR|0o666, int(unix.Mkdev(n.major, n.minor))); err != nil {
			return fmt.Errorf("mknod %s: %w", n.name, err)
		}
		if err := os.Chmod(p, 0o666); err != nil {
			return err
		}
	}
	return nil
}

// pivot makes jail the root and detaches the old one, so no path leads back
// to the host's filesystem.
func pivot(jail string) error {
	old := filepath.Join(jail, ".old-root")
	if err := os.Mkdir(old, 0o700); err != nil {
		return err
	}
	if err := unix.PivotRoot(jail, old); err != nil {
		return err
	}
	if err := unix.Chdir("/"); err != nil {
		return err
	}
	if err := unix.Unmount("/.old-root", unix.MNT_DETACH); err != nil {
		return err
	}
	return os.Remove("/.old-root")
}

// closeFDs marks every descriptor from n up close-on-exec (Linux 5.11), so
// the VMM starts with exactly stdio, the report pipe (itself close-on-exec)
// and the files passed on purpose. Closing them outright could pull fds
// from under the Go runtime before the exec.
func closeFDs(n int) error {
	unix.CloseOnExec(specFD)
	return unix.CloseRange(uint(n), ^uint(0), unix.CLOSE_RANGE_CLOEXEC)
}

// dropPrivileges sets rlimits, leaves root for the jail's uid with no
// supplementary groups and no capabilities, and sets no_new_privs.
func dropPrivileges(s *Spec) error {
	rl := []struct {
		name string
		res  int
		v    uint64
	}{
		{"core", unix.RLIMIT_CORE, 0},
		{"nofile", unix.RLIMIT_NOFILE, s.Limits.OpenFiles},
		{"fsize", unix.RLIMIT_FSIZE, s.Limits.FileSize},
		{"nproc", unix.RLIMIT_NPROC, uint64(s.Limits.Pids)},
	}
	for _, r := range rl {
		if r.v == 0 && r.name != "core" {
			continue
		}
		// syscall.Setrlimit, so Go does not restore its own NOFILE at exec.
		if err := syscall.Setrlimit(r.res, &syscall.Rlimit{Cur: r.v, Max: r.v}); err != nil {
			return fmt.Errorf("rlimit %s: %w", r.name, err)
		}
	}
	if err := unix.Setgroups(nil); err != nil {
		return fmt.Errorf("setgroups: %w", err)
	}
	if err := unix.Setresgid(s.GID, s.GID, s.GID); err != nil {
		return fmt.Errorf("setgid: %w", err)
	}
	// Leaving uid 0 clears the permitted and effective capabilities; the
	// bounding set is emptied too, for good measure.
	for c := 0; c <= unix.CAP_LAST_CAP; c++ {
		_ = unix.Prctl(unix.PR_CAPBSET_DROP, uintptr(c), 0, 0, 0)
	}
	if err := unix.Setresuid(s.UID, s.UID, s.UID); err != nil {
		return fmt.Errorf("setuid: %w", err)
	}
	// Setting the uid cleared the parent-death signal: set it again so the
	// VMM dies with the worker that started it.
	if err := unix.Prctl(unix.PR_SET_PDEATHSIG, uintptr(unix.SIGKILL), 0, 0, 0); err != nil {
		return fmt.Errorf("pdeathsig: %w", err)
	}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("no_new_privs: %w", err)
	}
	return nil
}
