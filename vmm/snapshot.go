package vmm

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"

	"microbox/internal/cache"
	"microbox/sandbox/protocol"
)

// snapshotFormat is part of every snapshot key: bump it when what a snapshot
// holds or how it is restored changes.
const snapshotFormat = "microbox-snapshot-1"

// templateSeals make a template's RAM immutable: no write, no resize, and no
// taking the seals off. A private (copy-on-write) mapping of it is still
// allowed, which is how every clone maps it.
const templateSeals = unix.F_SEAL_WRITE | unix.F_SEAL_SHRINK | unix.F_SEAL_GROW | unix.F_SEAL_SEAL

// migrationTimeout bounds a snapshot's save or restore; both take
// milliseconds, since guest RAM is not copied (x-ignore-shared).
const migrationTimeout = 30 * time.Second

// Snapshot is a paused, warmed VM saved for cloning: its guest RAM in a
// sealed memfd (shared by every clone, copy-on-write) and its device state,
// a few tens of KB.
type Snapshot struct {
	// Key identifies what the snapshot was made from (SnapshotKey).
	Key string
	// SaveTime is how long pausing and saving the state took.
	SaveTime time.Duration

	cfg   Config   // kernel, initramfs, image and machine it was taken of
	ram   *os.File // sealed memfd
	state []byte   // QEMU's device state (the migration stream)
}

// Close frees the template's memory once no clone maps it any more.
func (s *Snapshot) Close() error { return s.ram.Close() }

// RAMBytes is the memory the template really holds (pages the guest
// touched), shared by all its clones.
func (s *Snapshot) RAMBytes() int64 {
	var st unix.Stat_t
	if err := unix.Fstat(int(s.ram.Fd()), &st); err != nil {
		return 0
	}
	return st.Blocks * 512
}

// SnapshotKey names the snapshot of a VM config: every input that must be
// identical between the snapshot's VM and its clones. The kernel, initramfs,
// base image, language layer and QEMU binary are identified by path, size,
// modification time and inode, so a rebuilt file gives another key (a clone
// of a stale base would find other files where its page cache says they
// are); the machine by QEMU's full
// command line (memory, vCPUs, accel, CPU model, devices), with the VM's
// folder left out.
func SnapshotKey(c Config) (string, error) {
	_, key, err := snapshotConfig(c)
	return key, err
}

// snapshotConfig fills c's defaults (checking its files and resolving its
// accel once) and returns it with its snapshot key.
func snapshotConfig(c Config) (Config, string, error) {
	cfg, err := c.withDefaults()
	if err != nil {
		return cfg, "", err
	}
	key, err := keyOf(cfg)
	return cfg, key, err
}

// keyOf computes the key of a config whose defaults are filled.
func keyOf(cfg Config) (string, error) {
	parts := []string{snapshotFormat, cfg.SnapshotSalt}
	for _, p := range []string{cfg.QEMU, cfg.Kernel, cfg.Initramfs, cfg.Base, cfg.Image} {
		id, err := fileIdentity(p)
		if err != nil {
			return "", err
		}
		parts = append(parts, id)
	}
	cfg.ram, cfg.ramShared, cfg.incoming = os.Stdin, false, true // as every clone runs
	cfg.Jail = nil
	parts = append(parts, qemuArgs(cfg, "/vm")...)
	return cache.Key(parts...), nil
}

func fileIdentity(p string) (string, error) {
	real, err := filepath.EvalSymlinks(p)
	if err != nil {
		return "", err
	}
	var st unix.Stat_t
	if err := unix.Stat(real, &st); err != nil {
		return "", fmt.Errorf("%s: %w", p, err)
	}
	return fmt.Sprintf("%s:%d:%d.%09d:%d", real, st.Size, st.Mtim.Sec, st.Mtim.Nsec, st.Ino), nil
}

// BuildSnapshot boots a VM with its RAM in a fresh memfd, lets warm prepare
// it (run a program, so the runtime's files are in the guest's page cache),
// pauses it and saves its device state. The VM is gone when it returns; the
// memfd is sealed, so no clone and no escaped QEMU can change it.
func BuildSnapshot(ctx context.Context, c Config, warm func(*VM) error) (*Snapshot, error) {
	cfg, key, err := snapshotConfig(c)
	if err != nil {
		return nil, err
	}
	ram, err := newMemfd("microbox-ram", int64(cfg.MemoryMiB)<<20)
	if err != nil {
		return nil, err
	}
	cfg.ram, cfg.ramShared = ram, true
	snap, err := buildSnapshot(ctx, cfg, warm)
	if err != nil {
		ram.Close()
		return nil, err
	}
	snap.Key = key
	return snap, nil
}

func buildSnapshot(ctx context.Context, cfg Config, warm func(*VM) error) (*Snapshot, error) {
	vm, err := Start(ctx, cfg)
	if err != nil {
		return nil, err
	}
	defer vm.Close()
	if warm != nil {
		if err := warm(vm); err != nil {
			return nil, fmt.Errorf("warm up before the snapshot: %w", err)
		}
	}
	start := time.Now()
	state, err := vm.save()
	if err != nil {
		return nil, fmt.Errorf("save snapshot: %w\n%s", err, vm.diagnostics())
	}
	took := time.Since(start)
	// The seals need every writable shared mapping gone: QEMU's.
	if err := vm.Close(); err != nil {
		return nil, err
	}
	if err := seal(cfg.ram); err != nil {
		return nil, err
	}
	cfg.ramShared = false
	return &Snapshot{cfg: cfg, ram: cfg.ram, state: state, SaveTime: took}, nil
}

// save pauses the VM and writes its device state, without guest RAM, which
// is already in the memfd (x-ignore-shared), into a memfd that it returns
// the contents of.
func (vm *VM) save() ([]byte, error) {
	q := vm.QMP()
	if _, err := q.Execute("stop", nil, migrationTimeout); err != nil {
		return nil, err
	}
	if err := ignoreShared(q); err != nil {
		return nil, err
	}
	out, err := newMemfd("microbox-state", 0)
	if err != nil {
		return nil, err
	}
	defer out.Close()
	if err := q.SendFD("state", out, migrationTimeout); err != nil {
		return nil, err
	}
	if _, err := q.Execute("migrate", map[string]any{"uri": "fd:state"}, migrationTimeout); err != nil {
		return nil, err
	}
	if err := waitMigration(q, time.Now().Add(migrationTimeout)); err != nil {
		return nil, err
	}
	if _, err := out.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	return io.ReadAll(out)
}

func ignoreShared(q *QMP) error {
	_, err := q.Execute("migrate-set-capabilities", map[string]any{
		"capabilities": []map[string]any{{"capability": "x-ignore-shared", "state": true}},
	}, migrationTimeout)
	return err
}

// waitMigration polls until the outgoing or incoming migration is over.
func waitMigration(q *QMP, deadline time.Time) error {
	for {
		raw, err := q.Execute("query-migrate", nil, time.Until(deadline))
		if err != nil {
			return err
		}
		var st struct {
			Status    string `json:"status"`
			ErrorDesc string `json:"error-desc"`
		}
		if err := json.Unmarshal(raw, &st); err != nil {
			return err
		}
		switch st.Status {
		case "completed":
			return nil
		case "failed", "cancelled":
			return fmt.Errorf("migration %s: %s", st.Status, st.ErrorDesc)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("migration still %q after %s", st.Status, migrationTimeout)
		}
		time.Sleep(time.Millisecond)
	}
}

// Restore starts a clone of snap: a new QEMU process (jailed as c says)
// that maps the template's RAM privately and loads its device state. It
// returns the clone paused; Resume runs it. Only QEMU, Jail, RunDir,
// BootTimeout and Logger are taken from c: the machine is the snapshot's.
func Restore(ctx context.Context, c Config, snap *Snapshot) (*VM, error) {
	cfg := snap.cfg
	cfg.QEMU, cfg.Jail, cfg.RunDir, cfg.BootTimeout, cfg.Logger = c.QEMU, c.Jail, c.RunDir, c.BootTimeout, c.Logger
	cfg.Host, cfg.Accel = Host{}, snap.cfg.Accel
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	cfg.ram, cfg.ramShared, cfg.incoming = snap.ram, false, true
	vm, start, err := startProcess(ctx, cfg)
	if err != nil {
		return nil, err
	}
	if err := vm.incoming(snap.state, start.Add(cfg.BootTimeout)); err != nil {
		return nil, vm.fail(ctx, fmt.Errorf("restore: %w", err))
	}
	vm.ignoreShared = true
	// The guest's port is open (it was when the snapshot was taken): connect
	// before it runs, so its first read finds the host there.
	if err := vm.connectAgent(start.Add(cfg.BootTimeout)); err != nil {
		return nil, vm.fail(ctx, err)
	}
	vm.BootTime = time.Since(start)
	vm.mu.Lock()
	vm.paused = true
	vm.mu.Unlock()
	return vm, nil
}

func (vm *VM) incoming(state []byte, deadline time.Time) error {
	q := vm.QMP()
	if err := ignoreShared(q); err != nil {
		return err
	}
	in, err := newMemfd("microbox-state", 0)
	if err != nil {
		return err
	}
	defer in.Close()
	if _, err := in.Write(state); err != nil {
		return err
	}
	if _, err := in.Seek(0, io.SeekStart); err != nil {
		return err
	}
	if err := q.SendFD("state", in, time.Until(deadline)); err != nil {
		return err
	}
	if _, err := q.Execute("migrate-incoming", map[string]any{"uri": "fd:state"}, time.Until(deadline)); err != nil {
		return err
	}
	return waitMigration(q, deadline)
}

// Pause stops the guest's vCPUs; its clock stands still until Resume.
func (vm *VM) Pause() error {
	if _, err := vm.QMP().Execute("stop", nil, migrationTimeout); err != nil {
		return err
	}
	vm.mu.Lock()
	vm.paused = true
	vm.mu.Unlock()
	return nil
}

// Resume runs a paused clone and makes it unique and current: the agent gets
// fresh host entropy and the host's time, and answers once it has applied
// them. It returns how long that took.
func (vm *VM) Resume(timeout time.Duration) (time.Duration, error) {
	start := time.Now()
	agent, paused, err := vm.sendResume()
	if err != nil {
		return 0, err
	}
	if paused {
		if _, err := vm.QMP().Execute("cont", nil, timeout); err != nil {
			return 0, err
		}
	}
	_ = agent.SetReadDeadline(start.Add(timeout))
	defer agent.SetReadDeadline(time.Time{})
	f, err := protocol.ReadFrame(agent, protocol.MaxGuestPayload)
	if err != nil {
		return 0, fmt.Errorf("resume agent: %w", err)
	}
	typ, payload := f.Type, f.Payload
	switch typ {
	case protocol.TypeHello:
		var h protocol.Hello
		if err := json.Unmarshal(payload, &h); err != nil {
			return 0, err
		}
		if h.Version != protocol.Version {
			return 0, fmt.Errorf("%w: agent %d, host %d", ErrAgentVersion, h.Version, protocol.Version)
		}
		return time.Since(start), nil
	case protocol.TypeError:
		return 0, fmt.Errorf("agent: %s", payload)
	}
	return 0, fmt.Errorf("agent answered %s to resume", typ)
}

// ResumeAsync runs a paused clone and sends it its Resume message without
// waiting for either, so that a job written right after is dispatched at
// once: the agent handles frames in order and answers the Resume with a
// Hello before the job's own frames, which the reader must skip. If QEMU
// refuses to continue, the VM is closed, so that the reader gets an error
// instead of waiting on a guest that never runs.
func (vm *VM) ResumeAsync() error {
	_, paused, err := vm.sendResume()
	if err != nil || !paused {
		return err
	}
	go func() {
		if _, err := vm.QMP().Execute("cont", nil, migrationTimeout); err != nil {
			vm.mu.Lock()
			closed := vm.closed
			vm.mu.Unlock()
			if !closed {
				vm.log.Warn("clone did not continue: closed", "err", err)
				_ = vm.Close()
			}
		}
	}()
	return nil
}

// sendResume writes the Resume message (fresh entropy, the time now) to the
// agent's port. The guest reads it once it runs: sending before "cont"
// costs nothing and saves a round trip. paused says whether the caller must
// still continue the VM.
func (vm *VM) sendResume() (agent net.Conn, paused bool, err error) {
	entropy := make([]byte, 64)
	if _, err := rand.Read(entropy); err != nil {
		return nil, false, err
	}
	vm.mu.Lock()
	agent, paused = vm.agent, vm.paused
	vm.paused = false
	vm.mu.Unlock()
	if agent == nil {
		return nil, false, ErrClosed
	}
	msg, _ := protocol.Resume{Time: time.Now(), Entropy: entropy}.MarshalBinary()
	if err := protocol.WriteFrame(agent, protocol.TypeResume, 0, msg); err != nil {
		return nil, false, fmt.Errorf("resume agent: %w", err)
	}
	return agent, paused, nil
}

// seal makes a template's memfd immutable. F_SEAL_WRITE fails with EBUSY
// while a shared writable mapping exists: QEMU's, until the process is
// really gone. Close waits for the process it started, which is QEMU
// itself, except under a wrapper (jailer/trace/trace-qemu), where QEMU may
// outlive it by a moment.
func seal(f *os.File) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := unix.FcntlInt(f.Fd(), unix.F_ADD_SEALS, templateSeals)
		if err == nil {
			return nil
		}
		if !errors.Is(err, unix.EBUSY) || time.Now().After(deadline) {
			return fmt.Errorf("seal snapshot RAM: %w", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// newMemfd makes an anonymous memory file of size bytes that can be sealed.
func newMemfd(name string, size int64) (*os.File, error) {
	fd, err := unix.MemfdCreate(name, unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		return nil, fmt.Errorf("memfd_create: %w", err)
	}
	f := os.NewFile(uintptr(fd), name)
	if size > 0 {
		if err := f.Truncate(size); err != nil {
			f.Close()
			return nil, err
		}
	}
	return f, nil
}

// ErrNoSnapshot is returned by LoadSnapshot when none is stored for the
// config's key.
var ErrNoSnapshot = errors.New("no snapshot stored")

// snapshotMeta is stored next to a snapshot's RAM and state.
type snapshotMeta struct {
	Key       string `json:"key"`
	RAMSize   int64  `json:"ram_size"`
	StateSize int    `json:"state_size"`
}

func snapshotDir(cacheDir, key string) string {
	return filepath.Join(cacheDir, "snapshots", key)
}

// Store writes the snapshot under cacheDir/snapshots/<key>: the RAM as a
// sparse file (pages the guest never wrote, or wrote zeros to, take no
// disk), the state, and a manifest written last, so a half-written snapshot
// is never found.
func (s *Snapshot) Store(cacheDir string) error {
	dir := snapshotDir(cacheDir, s.Key)
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp(filepath.Dir(dir), ".tmp-"+s.Key+"-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	size := int64(s.cfg.MemoryMiB) << 20
	if err := copySparse(filepath.Join(tmp, "ram"), s.ram, size); err != nil {
		return fmt.Errorf("store snapshot RAM: %w", err)
	}
	if err := os.WriteFile(filepath.Join(tmp, "state"), s.state, 0o600); err != nil {
		return err
	}
	meta, _ := json.Marshal(snapshotMeta{Key: s.Key, RAMSize: size, StateSize: len(s.state)})
	if err := os.WriteFile(filepath.Join(tmp, "meta.json"), meta, 0o600); err != nil {
		return err
	}
	_ = os.RemoveAll(dir) // an older, possibly corrupt copy
	return os.Rename(tmp, dir)
}

// copySparse writes the first size bytes of src to a new file at path,
// skipping holes and all-zero pages.
func copySparse(path string, src *os.File, size int64) error {
	dst, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	defer dst.Close()
	if err := dst.Truncate(size); err != nil {
		return err
	}
	zero := make([]byte, 4096)
	err = forEachExtent(src, size, func(off int64, data []byte) error {
		for i := 0; i < len(data); i += len(zero) {
			page := data[i:min(i+len(zero), len(data))]
			if string(page) == string(zero[:len(page)]) {
				continue
			}
			if _, err := dst.WriteAt(page, off+int64(i)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	return dst.Sync()
}

// LoadSnapshot reads the stored snapshot of cfg, if there is one of its
// current key, into a new sealed memfd. It returns ErrNoSnapshot when none
// is stored, and another error for one that cannot be read (then the
// caller should build a new one).
func LoadSnapshot(cacheDir string, c Config) (*Snapshot, error) {
	cfg, key, err := snapshotConfig(c)
	if err != nil {
		return nil, err
	}
	dir := snapshotDir(cacheDir, key)
	raw, err := os.ReadFile(filepath.Join(dir, "meta.json"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, ErrNoSnapshot
	}
	if err != nil {
		return nil, err
	}
	var meta snapshotMeta
	if err := json.Unmarshal(raw, &meta); err != nil || meta.Key != key || meta.RAMSize != int64(cfg.MemoryMiB)<<20 {
		return nil, fmt.Errorf("snapshot %s: manifest does not match (%v)", dir, err)
	}
	state, err := os.ReadFile(filepath.Join(dir, "state"))
	if err != nil {
		return nil, err
	}
	if len(state) != meta.StateSize || len(state) == 0 {
		return nil, fmt.Errorf("snapshot %s: state is %d bytes, manifest says %d", dir, len(state), meta.StateSize)
	}
	src, err := os.Open(filepath.Join(dir, "ram"))
	if err != nil {
		return nil, err
	}
	defer src.Close()
	if st, err := src.Stat(); err != nil || st.Size() != meta.RAMSize {
		return nil, fmt.Errorf("snapshot %s: RAM file does not match the manifest", dir)
	}
	ram, err := newMemfd("microbox-ram", meta.RAMSize)
	if err != nil {
		return nil, err
	}
	if err := copyData(ram, src, meta.RAMSize); err != nil {
		ram.Close()
		return nil, fmt.Errorf("load snapshot RAM: %w", err)
	}
	if _, err := unix.FcntlInt(ram.Fd(), unix.F_ADD_SEALS, templateSeals); err != nil {
		ram.Close()
		return nil, fmt.Errorf("seal snapshot RAM: %w", err)
	}
	cfg.ram = ram
	return &Snapshot{Key: key, cfg: cfg, ram: ram, state: state}, nil
}

// copyData copies the data extents of src into dst (a fresh memfd, so
// holes stay holes and cost no memory).
func copyData(dst, src *os.File, size int64) error {
	return forEachExtent(src, size, func(off int64, data []byte) error {
		_, err := dst.WriteAt(data, off)
		return err
	})
}

// forEachExtent reads the first size bytes of src, skipping its holes
// (SEEK_DATA, SEEK_HOLE), and hands each chunk of data to fn with its
// offset.
func forEachExtent(src *os.File, size int64, fn func(off int64, data []byte) error) error {
	buf := make([]byte, 1<<20)
	for off := int64(0); off < size; {
		data, err := unix.Seek(int(src.Fd()), off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) { // only a hole is left
			return nil
		}
		if err != nil {
			return err
		}
		hole, err := unix.Seek(int(src.Fd()), data, unix.SEEK_HOLE)
		if err != nil {
			return err
		}
		hole = min(hole, size)
		for p := data; p < hole; {
			n, err := src.ReadAt(buf[:min(int64(len(buf)), hole-p)], p)
			if n == 0 && err != nil {
				return err
			}
			if err := fn(p, buf[:n]); err != nil {
				return err
			}
			p += int64(n)
		}
		off = hole
	}
	return nil
}

// RemoveStored deletes the stored copy of a snapshot that failed to
// restore, so that the next LoadSnapshot misses and a new one is built.
func RemoveStored(cacheDir, key string) error {
	return os.RemoveAll(snapshotDir(cacheDir, key))
}
