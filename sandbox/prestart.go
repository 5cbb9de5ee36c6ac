package sandbox

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"microbox/languages"
	"microbox/sandbox/protocol"
	"microbox/vmm"
)

// A language with a Prestart process has a second snapshot, its session
// snapshot: a VM made a session's (default disk and memory, no extra
// environment), the process started in it and past its start-up. A
// session that asks for nothing else is a clone of it; the host attaches
// to the process (its stream, its pid) as if it had just started it, and
// writes the process's Attach line. The resume has by then reseeded the
// guest's random generator from the host's entropy (the agent's Resume),
// so what the process draws afresh from the guest differs between clones.

// StartSessionSnapshot: restored from the language's session snapshot,
// its Prestart process already running.
const StartSessionSnapshot StartMode = "session-snapshot"

// prestartOutput bounds what a Prestart process may write over its life:
// it serves every cell of its session.
const prestartOutput = 1 << 30

// prestartTimeout bounds a Prestart process's start-up in the snapshot's
// VM: under TCG, Python's import of NumPy, pandas and Matplotlib takes
// minutes of a cold guest.
const prestartTimeout = 15 * time.Minute

// prestartMeta is what a clone of a session snapshot needs to know of the
// process in it; stored beside the snapshot.
type prestartMeta struct {
	PID    int    `json:"pid"`
	Stream uint32 `json:"stream"` // the process's stream
	Next   uint32 `json:"next"`   // the last stream id used
	Disk   int64  `json:"disk"`   // the session's DiskSize
	Memory int64  `json:"memory"` // and Memory
}

// sessionDefaults are the session settings a session snapshot is made
// with: a session asking for others starts the usual way.
func sessionDefaults() SessionConfig {
	return SessionConfig{ID: "session-snapshot", DiskSize: DefaultSessionDisk, Memory: DefaultRunLimits().Memory}
}

// sessionState is the state of a language's session snapshot.
func (r *Runner) sessionState(lang string) *langState {
	r.mu.Lock()
	defer r.mu.Unlock()
	key := lang + "#session"
	st := r.langs[key]
	if st == nil {
		st = &langState{session: true}
		r.langs[key] = st
	}
	return st
}

// sessionConfig is the VM of a language's session snapshot: its key
// covers the process and the session settings.
func (r *Runner) sessionConfig(lang languages.Language, img languages.Image, log *slog.Logger) vmm.Config {
	cfg := r.vmConfig(lang, img, log)
	d := sessionDefaults()
	cfg.SnapshotSalt = "session\x00" + lang.Prestart.Key() + "\x00" + strconv.FormatInt(d.DiskSize, 10) + "\x00" + strconv.FormatInt(d.Memory, 10)
	return cfg
}

// prestartFile is where a session snapshot's prestartMeta is stored: in
// the snapshot's folder, which a removal of the snapshot removes.
func (r *Runner) prestartFile(key string) string {
	return filepath.Join(r.cfg.CacheDir, "snapshots", key, "prestart.json")
}

func (r *Runner) loadOrBuildSession(lang languages.Language, img languages.Image, log *slog.Logger) (*vmm.Snapshot, prestartMeta, error) {
	cfg := r.sessionConfig(lang, img, log)
	start := time.Now()
	var meta prestartMeta
	snap, err := vmm.LoadSnapshot(r.cfg.CacheDir, cfg)
	if err == nil {
		b, rerr := os.ReadFile(r.prestartFile(snap.Key))
		if rerr == nil {
			rerr = json.Unmarshal(b, &meta)
		}
		if rerr == nil && meta.PID > 0 && meta.Stream > 0 {
			log.Debug("session snapshot loaded", "key", snap.Key, "took", time.Since(start))
			return snap, meta, nil
		}
		snap.Close()
		log.Warn("session snapshot without its process's record: building a new one", "err", rerr)
	} else if !errors.Is(err, vmm.ErrNoSnapshot) {
		log.Warn("stored session snapshot unreadable: building a new one", "err", err)
	}
	if r.cfg.NoSnapshotBuild {
		return nil, meta, fmt.Errorf("no session snapshot stored: %w", vmm.ErrNoSnapshot)
	}
	select {
	case r.buildSlot <- struct{}{}:
	case <-r.ctx.Done():
		return nil, meta, r.ctx.Err()
	}
	defer func() { <-r.buildSlot }()
	log.Info("building session snapshot (boot, session, start " + lang.Prestart.Tag + ", save)")
	snap, err = vmm.BuildSnapshot(r.ctx, cfg, func(vm *vmm.VM) error {
		var err error
		meta, err = r.prestart(r.ctx, vm, lang, log)
		return err
	})
	if err != nil {
		return nil, meta, err
	}
	if err := snap.Store(r.cfg.CacheDir); err != nil {
		log.Warn("could not store the session snapshot; it is kept in memory only", "err", err)
	} else {
		b, _ := json.Marshal(meta)
		if err := os.WriteFile(r.prestartFile(snap.Key), b, 0o600); err != nil {
			log.Warn("could not store the session snapshot's process record; it is kept in memory only", "err", err)
		}
	}
	log.Info("session snapshot built", "key", snap.Key, "ram_mib", snap.RAMBytes()>>20, "pid", meta.PID, "took", time.Since(start))
	return snap, meta, nil
}

// prestart makes vm, a fresh boot, a session's and starts the language's
// Prestart process in it, returning once the process said it is ready
// and the agent holds all the output credit the host granted (a clone's
// host starts counting from there).
func (r *Runner) prestart(ctx context.Context, vm *vmm.VM, lang languages.Language, log *slog.Logger) (prestartMeta, error) {
	ctx, cancel := context.WithTimeout(ctx, prestartTimeout)
	defer cancel()
	cfg := sessionDefaults()
	cfg.Language = lang.ID
	// Not tied to a context: the snapshot's builder closes the VM, which
	// ends the session's reader.
	s := r.newSession(r.ctx, func() {}, cfg, lang, vm, StartBoot, log)
	if err := s.init(r.sessionInit(cfg)); err != nil {
		return prestartMeta{}, err
	}
	go s.read()
	ps := lang.Prestart
	for _, f := range ps.Files {
		if _, err := s.WriteFile(ctx, f.Path, f.Mode, bytes.NewReader(f.Data)); err != nil {
			return prestartMeta{}, fmt.Errorf("write %s: %w", f.Path, err)
		}
	}
	p, err := s.Exec(ctx, ExecSpec{Argv: ps.Argv, Env: ps.Env, Stdin: true, Limits: Limits{Output: prestartOutput}})
	if err != nil {
		return prestartMeta{}, fmt.Errorf("start %s: %w", ps.Tag, err)
	}
	var out, errs bytes.Buffer
	for {
		ev, err := p.Next(ctx)
		if err != nil {
			return prestartMeta{}, fmt.Errorf("%s did not say it is ready: %w; stderr %q", ps.Tag, err, tail(errs.Bytes()))
		}
		if ev.Result != nil {
			return prestartMeta{}, fmt.Errorf("%s ended before it was ready: %s %s; stderr %q", ps.Tag, ev.Result.Status.Description, ev.Result.Message, tail(errs.Bytes()))
		}
		if ev.Stream == protocol.TypeStderr {
			errs.Write(ev.Data)
			continue
		}
		out.Write(ev.Data)
		if bytes.Contains(out.Bytes(), []byte(ps.Ready+"\n")) {
			break
		}
	}
	if errs.Len() > 0 {
		log.Warn("the pre-started process wrote to stderr", "tag", ps.Tag, "stderr", string(tail(errs.Bytes())))
	}
	// The last output's credit back, then a round trip: the agent
	// handles frames in order, so once the stat is answered it has the
	// credit.
	s.grant(p.id, p.pending)
	p.pending = 0
	if _, err := s.FileOp(ctx, protocol.FileOp{Op: protocol.FileStat, Path: "/box"}); err != nil {
		return prestartMeta{}, err
	}
	s.mu.Lock()
	next := s.next
	s.mu.Unlock()
	return prestartMeta{PID: p.PID, Stream: p.id, Next: next, Disk: cfg.DiskSize, Memory: cfg.Memory}, nil
}

func tail(b []byte) []byte {
	if len(b) > 2000 {
		return b[len(b)-2000:]
	}
	return b
}

// restorePrestarted returns a session cloned from the language's session
// snapshot, attached to its Prestart process; nil when the language has
// none, the session asks for other settings, the snapshot is not built
// yet (a build starts in the background) or the restore failed (logged):
// the caller then starts the session the usual way.
func (r *Runner) restorePrestarted(life context.Context, kill context.CancelFunc, cfg SessionConfig, lang languages.Language, img languages.Image, log *slog.Logger) *Session {
	d := sessionDefaults()
	if lang.Prestart == nil || r.cfg.Cold || len(cfg.Env) > 0 || cfg.DiskSize != d.DiskSize || cfg.Memory != d.Memory {
		return nil
	}
	st := r.sessionState(lang.ID)
	st.mu.Lock()
	snap, meta := st.snap, st.prestart
	if snap == nil {
		r.startBuild(st, lang, img)
	}
	st.mu.Unlock()
	if snap == nil {
		return nil
	}
	start := time.Now()
	vm, err := r.restore(life, snap, log)
	if err != nil {
		if life.Err() == nil {
			log.Warn("restore from the session snapshot failed: a usual start instead, snapshot dropped", "err", err)
			r.dropSnapshot(st, snap, err)
		}
		return nil
	}
	vm.BootTime = time.Since(start)
	context.AfterFunc(life, func() { _ = vm.Close() })
	s := r.newSession(life, kill, cfg, lang, vm, StartSessionSnapshot, log)
	hs := &hostStream{kind: protocol.TypeExec, frames: make(chan protocol.Frame, framesPerStream),
		granted: protocol.InitialCredit, stdin: newHostCredit(protocol.InitialCredit)}
	s.streams[meta.Stream] = hs
	s.next = meta.Next
	s.prestarted = &Process{PID: meta.PID, s: s, id: meta.Stream, st: hs}
	return s
}

// PrepareSession makes the language's session snapshot ready, building
// it if need be, and waits for it; a language without a Prestart process
// has none, and nothing is done.
func (r *Runner) PrepareSession(ctx context.Context, langID string) error {
	lang, img, err := r.built(langID)
	if err != nil || lang.Prestart == nil || r.cfg.Cold {
		return err
	}
	_, err = r.snapshotWait(ctx, r.sessionState(lang.ID), lang, img, true)
	return err
}

// Prestarted is the language's Prestart process, running since the
// session snapshot was taken, when the session is a clone of it; nil
// otherwise. Its events are the session's to read, as an Exec's.
func (s *Session) Prestarted() *Process { return s.prestarted }
