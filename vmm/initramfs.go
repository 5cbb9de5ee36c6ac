package vmm

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"microbox/internal/cache"
)

// initramfsRecipe changes whenever the layout written by writeInitramfs does.
const initramfsRecipe = "initramfs-v1"

// cpioEntry is one file of a newc cpio archive.
type cpioEntry struct {
	name  string
	mode  uint32 // type and permission bits, as in stat(2)
	data  []byte
	major uint32 // device numbers, for character devices
	minor uint32
}

const (
	sIFDIR = 0o040000
	sIFREG = 0o100000
	sIFCHR = 0o020000
)

// writeCPIO writes entries as a "newc" cpio archive, the format the kernel
// unpacks into its initial rootfs. Writing it ourselves needs no root and no
// cpio tool, and device nodes go in without mknod.
func writeCPIO(w io.Writer, entries []cpioEntry) error {
	pad := func(n int) []byte { return make([]byte, (4-n%4)%4) }
	var buf bytes.Buffer
	emit := func(ino int, e cpioEntry) {
		name := e.name + "\x00"
		fmt.Fprintf(&buf, "070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
			ino, e.mode, 0, 0, 1, 0, len(e.data), 0, 0, e.major, e.minor, len(name), 0)
		buf.WriteString(name)
		buf.Write(pad(110 + len(name)))
		buf.Write(e.data)
		buf.Write(pad(len(e.data)))
	}
	for i, e := range entries {
		emit(i+1, e)
	}
	emit(0, cpioEntry{name: "TRAILER!!!"})
	_, err := w.Write(buf.Bytes())
	return err
}

// initramfsEntries is the guest's initial root: the agent as /init, the
// mount points it uses and /dev/console, so PID 1 has a console for its log.
func initramfsEntries(agent []byte) []cpioEntry {
	dirs := []string{"dev", "proc", "sys", "run", "mnt", "mnt/root", "tmp"}
	es := make([]cpioEntry, 0, len(dirs)+2)
	for _, d := range dirs {
		es = append(es, cpioEntry{name: d, mode: sIFDIR | 0o755})
	}
	es = append(es,
		cpioEntry{name: "dev/console", mode: sIFCHR | 0o600, major: 5, minor: 1},
		cpioEntry{name: "init", mode: sIFREG | 0o755, data: agent},
	)
	return es
}

// BuildInitramfs packs the agent binary at agentPath into an initramfs under
// cacheDir/initramfs, named by a hash of the agent, and returns its path. A
// second call with the same agent returns at once.
func BuildInitramfs(cacheDir, agentPath string) (string, error) {
	agent, err := os.ReadFile(agentPath)
	if err != nil {
		return "", fmt.Errorf("guest agent: %w (build it with `make agent`)", err)
	}
	key := cache.Key(initramfsRecipe, string(agent))
	dir := filepath.Join(cacheDir, "initramfs")
	path := filepath.Join(dir, "agent-"+key+".cpio")
	if _, err := os.Stat(path); err == nil {
		return path, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	tmp, err := os.CreateTemp(dir, ".tmp-*.cpio")
	if err != nil {
		return "", err
	}
	defer os.Remove(tmp.Name())
	if err := writeCPIO(tmp, initramfsEntries(agent)); err != nil {
		tmp.Close()
		return "", fmt.Errorf("write initramfs: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return "", err
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return "", err
	}
	return path, os.Rename(tmp.Name(), path)
}
