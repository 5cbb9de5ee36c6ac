package agent

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"golang.org/x/sys/unix"

	"microbox/sandbox/protocol"
)

// ptsDir is the devpts instance of the programs' /dev: a private one, so
// their terminals are numbered from 0 and no other instance is visible.
const ptsDir = imageRoot + "/dev/pts"

// mountPTYs gives a session's programs terminals: a devpts of their own,
// /dev/ptmx to make new ones (what script, expect or Python's pty use) and
// /dev/tty for their controlling terminal.
func mountPTYs() error {
	if err := os.MkdirAll(ptsDir, 0o755); err != nil {
		return err
	}
	// gid 5 is Debian's tty group; terminals are their user's, mode 0620.
	if err := unix.Mount("devpts", ptsDir, "devpts", unix.MS_NOSUID|unix.MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620,gid=5"); err != nil {
		return fmt.Errorf("mount devpts: %w", err)
	}
	if err := os.Symlink("pts/ptmx", imageRoot+"/dev/ptmx"); err != nil && !os.IsExist(err) {
		return err
	}
	tty := imageRoot + "/dev/tty"
	if err := unix.Mknod(tty, unix.S_IFCHR|0o666, int(unix.Mkdev(5, 0))); err != nil && !os.IsExist(err) {
		return fmt.Errorf("mknod %s: %w", tty, err)
	}
	return os.Chmod(tty, 0o666)
}

// pty is a terminal: the agent keeps the master, the program gets the
// slave as its standard input, output and error.
type pty struct {
	master, slave *os.File
}

func openPTY(size protocol.Resize) (*pty, error) {
	m, err := os.OpenFile(filepath.Join(ptsDir, "ptmx"), os.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	fail := func(step string, err error) (*pty, error) {
		m.Close()
		return nil, fmt.Errorf("terminal: %s: %w", step, err)
	}
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		return fail("unlock", err)
	}
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		return fail("number", err)
	}
	sp := filepath.Join(ptsDir, strconv.Itoa(n))
	sl, err := os.OpenFile(sp, os.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fail("open "+sp, err)
	}
	// The program's own terminal, as login would make it.
	if err := sl.Chown(boxUID, 5); err != nil {
		sl.Close()
		return fail("chown", err)
	}
	t := &pty{master: m, slave: sl}
	if err := t.resize(size); err != nil {
		t.close()
		return nil, err
	}
	return t, nil
}

func (t *pty) resize(r protocol.Resize) error {
	if r.Cols == 0 || r.Rows == 0 {
		r = protocol.Resize{Cols: 80, Rows: 24}
	}
	return unix.IoctlSetWinsize(int(t.master.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Col: r.Cols, Row: r.Rows})
}

func (t *pty) close() {
	_ = t.master.Close()
	_ = t.slave.Close()
}
