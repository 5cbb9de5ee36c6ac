package agent

import (
	"errors"
	"os"
	"os/signal"
	"syscall"

	"golang.org/x/sys/unix"
)

// reap collects every child of PID 1 for as long as the agent runs. User
// programs are the spawner's children, and the spawner reports their exits;
// what reaches PID 1 is what they left behind when they ended (reparented
// orphans), whose statuses nobody needs, and the spawner itself if it dies.
// An unreaped orphan would stay a zombie that counts against a pids limit
// and shows in /proc. onSpawner is called with the spawner's pid's status.
func reap(spawnerPid func() int, onSpawner func(unix.WaitStatus)) {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGCHLD)
	go func() {
		for range sigs {
			for {
				var ws unix.WaitStatus
				pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
				if errors.Is(err, unix.EINTR) {
					continue
				}
				if err != nil || pid <= 0 {
					break
				}
				if pid == spawnerPid() && (ws.Exited() || ws.Signaled()) {
					onSpawner(ws)
				}
			}
		}
	}()
}
