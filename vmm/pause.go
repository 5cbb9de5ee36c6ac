package vmm

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// A VM is paused to disk by migrating its whole state -- RAM and devices --
// into a stream, and brought back by starting a QEMU with the same machine
// and command line that takes the stream as its incoming migration. For a
// clone of a snapshot the command line maps the same sealed template
// (share=off), but the clone's RAM is private, so every page it holds is in
// the stream (zero pages as markers), and the resumed VM holds them all as
// its own.
//
// The stream goes through a pipe the caller drains, outside the jail: the
// jail's RLIMIT_FSIZE (64 MiB) would kill a QEMU writing its RAM to a file,
// and a file QEMU could write would be QEMU's to poison.

// pauseTimeout bounds saving or loading a whole VM.
const pauseTimeout = 5 * time.Minute

// maxBandwidth lifts QEMU's migration throttle (32 MiB/s by default in
// 7.2), which would make saving a VM's RAM take seconds per 100 MiB for
// nothing: the stream goes to a local file.
const maxBandwidth = 1 << 40

// SaveTo stops the VM and writes its whole state to w. The VM stays
// stopped; the caller closes it (its memory is then freed) and later
// starts a new one from the stream with RestoreFrom. It returns the bytes
// written.
func (vm *VM) SaveTo(w io.Writer) (int64, error) {
	q := vm.QMP()
	if _, err := q.Execute("stop", nil, migrationTimeout); err != nil {
		return 0, err
	}
	if _, err := q.Execute("migrate-set-parameters", map[string]any{"max-bandwidth": int64(maxBandwidth)}, migrationTimeout); err != nil {
		return 0, err
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		return 0, err
	}
	defer pr.Close()
	err = q.SendFD("pause", pw, migrationTimeout)
	pw.Close() // QEMU has its own copy: EOF once it closes it
	if err != nil {
		return 0, err
	}
	copied := make(chan struct{})
	var n int64
	var copyErr error
	go func() {
		defer close(copied)
		n, copyErr = io.Copy(w, pr)
	}()
	if _, err := q.Execute("migrate", map[string]any{"uri": "fd:pause"}, migrationTimeout); err != nil {
		pr.Close()
		<-copied
		return 0, err
	}
	werr := waitMigration(q, time.Now().Add(pauseTimeout))
	if werr != nil {
		pr.Close() // QEMU may still hold the pipe: do not wait for its EOF
	}
	<-copied
	if werr != nil {
		return n, werr
	}
	return n, copyErr
}

// RestoreFrom starts a new VM with the machine of vm (now closed) and
// loads the state SaveTo wrote, read from r. It returns the VM stopped,
// its agent connection made; Resume runs it and makes its clock current.
func RestoreFrom(ctx context.Context, vm *VM, r io.Reader) (*VM, error) {
	cfg := vm.cfg
	cfg.incoming = true
	if vm.cfg.ram != nil {
		cfg.ramShared = false
	}
	nvm, start, err := startProcess(ctx, cfg)
	if err != nil {
		return nil, err
	}
	deadline := start.Add(pauseTimeout)
	q := nvm.QMP()
	if vm.ignoreShared {
		// The stream says which capabilities its source had; they must
		// match before it is read.
		if err := ignoreShared(q); err != nil {
			return nil, nvm.fail(ctx, err)
		}
	}
	nvm.ignoreShared = vm.ignoreShared
	pr, pw, err := os.Pipe()
	if err != nil {
		return nil, nvm.fail(ctx, err)
	}
	err = q.SendFD("resume", pr, time.Until(deadline))
	pr.Close()
	if err != nil {
		pw.Close()
		return nil, nvm.fail(ctx, err)
	}
	fed := make(chan error, 1)
	go func() {
		_, err := io.Copy(pw, r)
		pw.Close()
		fed <- err
	}()
	if _, err := q.Execute("migrate-incoming", map[string]any{"uri": "fd:resume"}, time.Until(deadline)); err != nil {
		return nil, nvm.fail(ctx, err)
	}
	if err := waitMigration(q, deadline); err != nil {
		return nil, nvm.fail(ctx, fmt.Errorf("load the paused state: %w", err))
	}
	if err := <-fed; err != nil && !errors.Is(err, unix.EPIPE) {
		return nil, nvm.fail(ctx, fmt.Errorf("read the paused state: %w", err))
	}
	if err := nvm.connectAgent(deadline); err != nil {
		return nil, nvm.fail(ctx, err)
	}
	nvm.BootTime = time.Since(start)
	nvm.mu.Lock()
	nvm.paused = true
	nvm.mu.Unlock()
	return nvm, nil
}
