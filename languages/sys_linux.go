package languages

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// killGroupOnCancel puts cmd in its own process group and kills the whole
// group when its context ends: debootstrap and apt run dpkg and maintainer
// scripts as children that must not outlive a cancelled build and keep
// writing into a dir being removed.
func killGroupOnCancel(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 10 * time.Second
}

// lockDir takes an exclusive flock on path, waiting (and saying so once)
// while another build holds it. Every artifact has a lock of its own, so two
// builds of one artifact, in this process or another, never remove each
// other's temp dirs, and builds of different artifacts run at once.
func lockDir(ctx context.Context, path string, say func(string)) (unlock func(), err error) {
	for waited := false; ; {
		unlock, ok, err := tryLock(path)
		if err != nil || ok {
			return unlock, err
		}
		if !waited {
			say("waiting for another build of the same image to finish (lock " + path + ")")
			waited = true
		}
		select {
		case <-ctx.Done():
			return nil, ctxErr(ctx)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// tryLock takes an exclusive flock on path if nobody holds it.
func tryLock(path string) (unlock func(), ok bool, err error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, false, err
	}
	err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
	if err == nil {
		return func() { f.Close() }, true, nil
	}
	f.Close()
	if err == syscall.EWOULDBLOCK {
		return nil, false, nil
	}
	return nil, false, os.NewSyscallError("flock", err)
}

// unmountUnder lazily unmounts every mount point at or below dir, deepest
// first.
func unmountUnder(dir string) error {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return err
	}
	defer f.Close()
	var points []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		mp := unescapeMountPath(fields[4])
		if mp == dir || strings.HasPrefix(mp, dir+"/") {
			points = append(points, mp)
		}
	}
	if err := sc.Err(); err != nil {
		return err
	}
	slices.SortFunc(points, func(a, b string) int { return len(b) - len(a) })
	for _, p := range points {
		if err := syscall.Unmount(p, syscall.MNT_DETACH); err != nil && err != syscall.EINVAL && err != syscall.ENOENT {
			return fmt.Errorf("unmount %s: %w", p, os.NewSyscallError("umount2", err))
		}
	}
	return nil
}

// unescapeMountPath undoes mountinfo's octal escapes (\040 for a space).
func unescapeMountPath(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// diskSize is the bytes a file takes on disk: its allocated blocks, so the
// holes of a sparse ext4 image do not count.
func diskSize(path string) (int64, error) {
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return 0, &os.PathError{Op: "stat", Path: path, Err: err}
	}
	return st.Blocks * 512, nil
}

// mountProc mounts a proc at rootfs/proc for the commands run in the
// chroot: maintainer scripts and runtimes find themselves through
// /proc/self/exe (Java's postinst, rustc, GHC's $ORIGIN rpaths, Mono).
// The returned func unmounts it; removeTree detaches it too if a build
// dies first.
func mountProc(rootfs string) (unmount func() error, err error) {
	target := filepath.Join(rootfs, "proc")
	if err := syscall.Mount("proc", target, "proc", syscall.MS_NOSUID|syscall.MS_NODEV|syscall.MS_NOEXEC, ""); err != nil {
		return nil, fmt.Errorf("mount proc on %s: %w", target, os.NewSyscallError("mount", err))
	}
	return func() error {
		if err := syscall.Unmount(target, syscall.MNT_DETACH); err != nil {
			return fmt.Errorf("unmount %s: %w", target, os.NewSyscallError("umount2", err))
		}
		return nil
	}, nil
}

// diskFull says whether the filesystem holding path has no block or no
// inode left for an unprivileged user. Bavail rather than Bfree: a root
// build that filled an ext4 leaves its reserved blocks, and only Bavail is
// then 0.
func diskFull(path string) bool {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return false
	}
	return st.Bavail == 0 || (st.Files > 0 && st.Ffree == 0)
}
