package agent

import (
	"errors"
	"os"
	"os/signal"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// reaper collects every child of PID 1. As init, the agent inherits every
// orphan of the user's program; an unreaped orphan stays a zombie that still
// counts against the next step's pids limit and shows in its /proc. So one
// goroutine reaps all children (wait4(-1)) and hands the exit status of the
// ones a step started to that step; os/exec's Wait is never used.
type reaper struct {
	mu      sync.Mutex
	waiting map[int]chan unix.WaitStatus
	exited  map[int]unix.WaitStatus // reaped before anyone asked
}

func startReaper() *reaper {
	r := &reaper{waiting: map[int]chan unix.WaitStatus{}, exited: map[int]unix.WaitStatus{}}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGCHLD)
	go func() {
		for range sigs {
			r.reapAll()
		}
	}()
	return r
}

func (r *reaper) reapAll() {
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil || pid <= 0 {
			return
		}
		if ws.Stopped() || ws.Continued() {
			continue
		}
		r.mu.Lock()
		if ch, ok := r.waiting[pid]; ok {
			delete(r.waiting, pid)
			ch <- ws
		} else {
			r.exited[pid] = ws
		}
		r.mu.Unlock()
	}
}

// wait returns a channel that receives pid's exit status. Statuses of
// orphans nobody waits for are dropped once the step that owned them ends
// (forget).
func (r *reaper) wait(pid int) <-chan unix.WaitStatus {
	ch := make(chan unix.WaitStatus, 1)
	r.mu.Lock()
	defer r.mu.Unlock()
	if ws, ok := r.exited[pid]; ok {
		delete(r.exited, pid)
		ch <- ws
		return ch
	}
	r.waiting[pid] = ch
	return ch
}

// forget drops the statuses of reaped orphans; called between steps, when
// no process of the previous step is left.
func (r *reaper) forget() {
	r.mu.Lock()
	clear(r.exited)
	r.mu.Unlock()
	// A SIGCHLD can coalesce with an earlier one: reap what is left now.
	r.reapAll()
	r.mu.Lock()
	clear(r.exited)
	r.mu.Unlock()
}
