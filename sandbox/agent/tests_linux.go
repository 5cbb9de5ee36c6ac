package agent

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"golang.org/x/sys/unix"

	"microbox/sandbox/protocol"
)

// pristineDir holds the work dir of a multi-test job as the compile step
// left it. It is in the agent's private dir, outside the chroot, and
// read-only: no test can reach it, let alone change it for the next one.
const pristineDir = privateDir + "/pristine"

// runTests runs the tests of a multi-test job after its compile step: for
// each, fresh tmpfs mounts for the work dir, /tmp and /dev/shm, the work dir
// restored from the pristine copy, then the Run step with the test's stdin,
// its output streamed after a Test frame.
func (a *agent) runTests(job *protocol.Job, mounts []mountSpec, w *protocol.Writer, res *protocol.Result) error {
	work := imageRoot + workDir
	// The work dir's own tmpfs becomes the pristine copy: moved, not
	// copied, so it costs no memory twice. Nothing of the compile step is
	// left to write to it (its cgroup was emptied before runStep returned).
	if err := os.MkdirAll(pristineDir, 0o700); err != nil {
		return err
	}
	if err := unix.Mount(work, pristineDir, "", unix.MS_MOVE, ""); err != nil {
		return fmt.Errorf("move the work dir aside: %w", os.NewSyscallError("mount", err))
	}
	defer func() {
		if err := unix.Unmount(pristineDir, unix.MNT_DETACH); err != nil {
			a.log.Error("unmount", "target", pristineDir, "err", err)
		}
	}()
	const ro = unix.MS_REMOUNT | unix.MS_BIND | unix.MS_RDONLY | unix.MS_NOSUID | unix.MS_NODEV
	if err := unix.Mount("", pristineDir, "", ro, ""); err != nil {
		return fmt.Errorf("make the work dir copy read-only: %w", os.NewSyscallError("mount", err))
	}
	stdinPath := filepath.Join(privateDir, "stdin")
	for i, t := range job.Tests {
		if err := remount(mounts); err != nil {
			return fmt.Errorf("test %d: %w", i, err)
		}
		if err := copyTree(pristineDir, work); err != nil {
			return fmt.Errorf("test %d: restore the work dir: %w", i, err)
		}
		if err := os.WriteFile(stdinPath, t.Stdin, 0o600); err != nil {
			return fmt.Errorf("test %d: stdin: %w", i, err)
		}
		if err := w.JSON(protocol.TypeTest, 0, protocol.TestStart{Index: i}); err != nil {
			return err
		}
		stdout, stderr := outputSinks(w, job)
		var sr *protocol.StepResult
		var err error
		if job.Interactor != nil {
			var check *protocol.Check
			if sr, check, err = a.interact(job, i, stdout, stderr); err != nil {
				return fmt.Errorf("test %d: interactor: %w", i, err)
			}
			res.Checks = append(res.Checks, check)
		} else if sr, err = a.runStep(fmt.Sprintf("run-%d-%d", a.jobs, i), &job.Run, stdinPath, stdout, stderr); err != nil {
			return fmt.Errorf("test %d: run: %w", i, err)
		}
		countOutput(sr, stdout, stderr)
		res.Tests = append(res.Tests, *sr)
		if job.Checker != nil {
			var check *protocol.Check
			if !failed(sr) {
				if check, err = a.runCheck(job, mounts, i, stdout.kept); err != nil {
					return fmt.Errorf("test %d: checker: %w", i, err)
				}
			}
			res.Checks = append(res.Checks, check)
		}
		if job.StopOnFailure && failed(sr) {
			break
		}
	}
	return nil
}

// remount replaces each of mounts (unmounted if mounted) with a fresh one.
// The step before has ended and its cgroup is empty, so no process holds
// anything open on them.
func remount(mounts []mountSpec) error {
	for _, m := range mounts {
		// EINVAL: not a mount point (the work dir after it was moved).
		if err := unix.Unmount(m.target, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) {
			return fmt.Errorf("unmount %s: %w", m.target, err)
		}
	}
	return mountAll(mounts)
}

// copyTree copies the tree at src into the existing directory dst:
// directories, regular files (holes kept), symlinks and FIFOs, with their
// owners, modes (set-id and sticky bits included) and file modification
// times. Sockets and devices are left out: a socket means nothing without
// its process, and the program's uid cannot make devices. The walk never
// follows a symlink; the caller guarantees that no process changes either
// tree meanwhile.
func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		info, err := d.Info()
		if err != nil {
			return err
		}
		st, ok := info.Sys().(*syscall.Stat_t)
		if !ok {
			return fmt.Errorf("%s: no stat", p)
		}
		mode := info.Mode()
		switch {
		case mode.IsDir():
			if rel != "." {
				if err := os.Mkdir(target, 0o700); err != nil {
					return err
				}
			}
		case mode.IsRegular():
			if err := copyFile(p, target, info.Size()); err != nil {
				return err
			}
		case mode&fs.ModeSymlink != 0:
			link, err := os.Readlink(p)
			if err != nil {
				return err
			}
			if err := os.Symlink(link, target); err != nil {
				return err
			}
		case mode&fs.ModeNamedPipe != 0:
			if err := unix.Mkfifo(target, 0o600); err != nil {
				return &os.PathError{Op: "mkfifo", Path: target, Err: err}
			}
		default:
			return nil
		}
		if err := os.Lchown(target, int(st.Uid), int(st.Gid)); err != nil {
			return err
		}
		if mode&fs.ModeSymlink != 0 {
			return nil
		}
		// After the chown, which clears set-id bits.
		if err := os.Chmod(target, mode&(fs.ModePerm|fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky)); err != nil {
			return err
		}
		if mode.IsRegular() {
			return os.Chtimes(target, info.ModTime(), info.ModTime())
		}
		return nil
	})
}

// copyFile copies a regular file of the given size, keeping its holes: a
// sparse file the compile step made must not cost real memory in every
// test's copy.
func copyFile(src, dst string, size int64) error {
	in, err := os.OpenFile(src, os.O_RDONLY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return err
	}
	if err := copyData(out, in, size); err != nil {
		out.Close()
		return fmt.Errorf("copy %s: %w", src, err)
	}
	return out.Close()
}

func copyData(out, in *os.File, size int64) error {
	fd := int(in.Fd())
	for off := int64(0); off < size; {
		data, err := unix.Seek(fd, off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			break // only a hole is left
		}
		if err != nil {
			return os.NewSyscallError("lseek", err)
		}
		hole, err := unix.Seek(fd, data, unix.SEEK_HOLE)
		if err != nil {
			return os.NewSyscallError("lseek", err)
		}
		if _, err := io.Copy(io.NewOffsetWriter(out, data), io.NewSectionReader(in, data, hole-data)); err != nil {
			return err
		}
		off = hole
	}
	// Sets the size when the file ends in a hole.
	return out.Truncate(size)
}
