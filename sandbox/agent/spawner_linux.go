package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path"
	"strings"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// The spawner starts every user program. It is a child of the agent,
// started once at boot (so it lives in every snapshot), that fork-execs the
// program directly: chroot, credentials, working directory and cgroup are
// set by the kernel and Go's fork path (SysProcAttr), and the rlimits by
// setting them on the spawner itself around the fork, since a child
// inherits them and nothing else of the spawner's work is affected by them.
// A program thus starts without a helper binary of ours executing first,
// which under TCG cost about 200 ms a process (a Go program's start-up,
// translated anew in every VM).
//
// Programs are the spawner's children, so it reaps them and reports each
// exit after its start, in order, on the same socket: a pid is never
// reused before its exit is reported, so the agent can never take one
// program's status for another's. Whatever a program leaves behind is
// reparented to PID 1, the agent, which reaps it and drops its status.

// spawnerArg is argv[1] that turns the agent binary into the spawner.
const spawnerArg = "spawner"

// spawnerFD is the spawner's end of its socket.
const spawnerFD = 3

// maxSpawnMessage bounds a request: argv and environment (the kernel takes
// at most a quarter of the stack limit for them anyway) and the JSON.
const maxSpawnMessage = 4 << 20

// spawnRequest asks the spawner to start a program. Its standard input,
// output and error, and the cgroup it is born in, come as passed fds, in
// that order.
type spawnRequest struct {
	Root    string      `json:"root"` // chroot
	Dir     string      `json:"dir"`  // working directory in the chroot
	UID     int         `json:"uid"`
	GID     int         `json:"gid"`
	Argv    []string    `json:"argv"`
	Env     []string    `json:"env"`
	Rlimits []rlimitSet `json:"rlimits"`
	// TTY makes standard input the controlling terminal of a new session.
	TTY bool `json:"tty,omitempty"`
}

type rlimitSet struct {
	Resource int    `json:"resource"`
	Name     string `json:"name"`
	Value    uint64 `json:"value"`
}

// spawnMessage is what the spawner sends: a reply to the request under way
// (Pid, or Step and Error), or a program's exit (Exit with Status).
type spawnMessage struct {
	Pid        int    `json:"pid,omitempty"`
	Step       string `json:"step,omitempty"`
	Error      string `json:"error,omitempty"`
	ExecFormat bool   `json:"exec_format,omitempty"`
	Exit       int    `json:"exit,omitempty"`
	Status     uint32 `json:"status,omitempty"`
}

// spawnError is a program that could not be started, and the step that
// failed.
type spawnError struct {
	Step       string
	Message    string
	ExecFormat bool
}

func (e *spawnError) Error() string { return e.Step + ": " + e.Message }

// runSpawner is the spawner's main; it never returns.
func runSpawner() {
	// Kept in the struct: a collected *os.File closes its descriptor.
	f := os.NewFile(spawnerFD, "spawner")
	s := &spawnServer{file: f, sock: int(f.Fd())}
	// Core dumps would land in the work dir; nothing here needs one.
	_ = unix.Setrlimit(unix.RLIMIT_CORE, &unix.Rlimit{})
	for _, r := range []int{unix.RLIMIT_NOFILE, unix.RLIMIT_FSIZE, unix.RLIMIT_STACK, unix.RLIMIT_NPROC} {
		var lim syscall.Rlimit
		if err := syscall.Getrlimit(r, &lim); err == nil {
			s.own = append(s.own, ownLimit{r, lim})
		}
	}
	sigs := make(chan os.Signal, 16)
	signal.Notify(sigs, syscall.SIGCHLD)
	go func() {
		for range sigs {
			s.reap()
		}
	}()
	buf := make([]byte, maxSpawnMessage)
	oob := make([]byte, unix.CmsgSpace(4*4))
	for {
		n, oobn, _, _, err := unix.Recvmsg(s.sock, buf, oob, 0)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil || n == 0 {
			fmt.Fprintf(os.Stderr, "spawner: socket ended (%d, %v)\n", n, err)
			os.Exit(0) // the agent is gone
		}
		fds, ferr := parseFDs(oob[:oobn])
		s.mu.Lock()
		msg := s.spawn(buf[:n], fds, ferr)
		s.send(msg)
		s.mu.Unlock()
		for _, fd := range fds {
			_ = unix.Close(fd)
		}
	}
}

type spawnServer struct {
	file *os.File
	sock int
	// mu orders messages: a program's exit is sent only after the reply
	// that announced it.
	mu  sync.Mutex
	own []ownLimit // the spawner's own limits, restored after each fork
}

type ownLimit struct {
	resource int
	lim      syscall.Rlimit
}

func (s *spawnServer) send(m spawnMessage) {
	b, _ := json.Marshal(m)
	for {
		err := unix.Sendmsg(s.sock, b, nil, nil, 0)
		if !errors.Is(err, unix.EINTR) {
			return
		}
	}
}

func (s *spawnServer) reap() {
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
		s.mu.Lock()
		s.send(spawnMessage{Exit: pid, Status: uint32(ws)})
		s.mu.Unlock()
	}
}

func parseFDs(oob []byte) ([]int, error) {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil, err
	}
	var fds []int
	for _, m := range msgs {
		f, err := unix.ParseUnixRights(&m)
		if err != nil {
			return fds, err
		}
		fds = append(fds, f...)
	}
	return fds, nil
}

func (s *spawnServer) spawn(raw []byte, fds []int, ferr error) spawnMessage {
	fail := func(step string, err error) spawnMessage {
		return spawnMessage{Step: step, Error: err.Error(), ExecFormat: errors.Is(err, unix.ENOEXEC)}
	}
	var req spawnRequest
	if err := json.Unmarshal(raw, &req); err != nil {
		return fail("decode request", err)
	}
	if ferr != nil || len(fds) != 4 {
		return fail("receive files", fmt.Errorf("%d descriptors (%v)", len(fds), ferr))
	}
	if len(req.Argv) == 0 {
		return fail("exec", errors.New("empty command"))
	}
	argv0, err := lookPath(req.Root, req.Dir, req.Argv[0], req.Env)
	if err != nil {
		return fail("exec", err)
	}
	if err := checkDir(req.Root, req.Dir); err != nil {
		return fail("chdir", err)
	}
	// The child inherits what is set here; the spawner itself only writes
	// to its socket meanwhile, which none of these limits touch.
	// syscall.Setrlimit, not unix's, so that Go does not restore its own
	// RLIMIT_NOFILE in the child.
	var cpu *unix.Rlimit
	for _, r := range req.Rlimits {
		lim := syscall.Rlimit{Cur: r.Value, Max: r.Value}
		if r.Resource == unix.RLIMIT_CPU {
			// Counted per process from its start: set on the spawner, it
			// would count the spawner's own past. Set on the child below.
			cpu = &unix.Rlimit{Cur: r.Value, Max: r.Value}
			continue
		}
		if err := syscall.Setrlimit(r.Resource, &lim); err != nil {
			s.restore()
			return fail("setrlimit "+r.Name, err)
		}
	}
	// A guest OOM must take the program, never the agent: the spawner
	// shields itself like the agent, so its children start from there.
	_ = os.WriteFile("/proc/self/oom_score_adj", []byte("1000"), 0)
	attr := &syscall.ProcAttr{
		Dir:   req.Dir,
		Env:   req.Env,
		Files: []uintptr{uintptr(fds[0]), uintptr(fds[1]), uintptr(fds[2])},
		Sys: &syscall.SysProcAttr{
			Chroot:      req.Root,
			Credential:  &syscall.Credential{Uid: uint32(req.UID), Gid: uint32(req.GID), Groups: []uint32{}},
			Setsid:      true,
			Setctty:     req.TTY,
			Ctty:        0,
			UseCgroupFD: true,
			CgroupFD:    fds[3],
		},
	}
	pid, err := syscall.ForkExec(argv0, req.Argv, attr)
	_ = os.WriteFile("/proc/self/oom_score_adj", []byte("-1000"), 0)
	s.restore()
	if err != nil {
		return fail("exec "+req.Argv[0], err)
	}
	if cpu != nil {
		// A backstop only (the agent watches the cgroup's CPU time, which
		// counts every child): the program has run for microseconds.
		_ = unix.Prlimit(pid, unix.RLIMIT_CPU, cpu, nil)
	}
	return spawnMessage{Pid: pid}
}

// restore puts the spawner's own rlimits back; as root it may raise them
// again.
func (s *spawnServer) restore() {
	for _, o := range s.own {
		lim := o.lim
		_ = syscall.Setrlimit(o.resource, &lim)
	}
}

// lookPath resolves a command with the program's PATH, inside root: the
// name as it is when it has a slash, else the first PATH entry that holds
// an executable regular file of that name. Symlinks are resolved as the
// program will see them (RESOLVE_IN_ROOT), and the result is a path inside
// root.
func lookPath(root, dir, name string, env []string) (string, error) {
	if strings.Contains(name, "/") {
		return name, nil
	}
	pathVar := "/usr/local/bin:/usr/bin:/bin"
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			pathVar = v
		}
	}
	for _, d := range strings.Split(pathVar, ":") {
		if d == "" {
			d = "."
		}
		if !path.IsAbs(d) {
			d = path.Join(dir, d)
		}
		p := path.Join(d, name)
		if executableIn(root, p) {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s: command not found", name)
}

// executableIn says whether p, resolved inside root, is a regular file with
// an execute bit.
func executableIn(root, p string) bool {
	fd, err := openInRoot(root, p, unix.O_PATH)
	if err != nil {
		return false
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return false
	}
	return st.Mode&unix.S_IFMT == unix.S_IFREG && st.Mode&0o111 != 0
}

// checkDir says why dir, inside root, cannot be a working directory.
func checkDir(root, dir string) error {
	fd, err := openInRoot(root, dir, unix.O_PATH|unix.O_DIRECTORY)
	if err != nil {
		return fmt.Errorf("%s: %w", dir, err)
	}
	return unix.Close(fd)
}

// openInRoot opens p as if root were "/": neither ".." nor a symlink leads
// out of it.
func openInRoot(root, p string, flags int) (int, error) {
	rfd, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	defer unix.Close(rfd)
	return unix.Openat2(rfd, strings.TrimLeft(p, "/"), &unix.OpenHow{
		Flags:   uint64(flags | unix.O_CLOEXEC),
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS,
	})
}

// spawner is the agent's side of the spawner.
type spawner struct {
	cmd  *exec.Cmd
	sock *os.File
	mu   sync.Mutex // one request at a time
	// replies carries the answer to the request under way, with the exit
	// channel of the program it started.
	replies chan spawnReply
	exitsMu sync.Mutex
	exits   map[int]chan unix.WaitStatus
	dead    chan struct{} // closed when the spawner's socket ends
}

type spawnReply struct {
	msg  spawnMessage
	exit chan unix.WaitStatus
}

// startSpawner starts the spawner process.
func startSpawner() (*spawner, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, os.NewSyscallError("socketpair", err)
	}
	for _, fd := range fds {
		// Requests carry argv and environment; the default buffer would
		// refuse a large one.
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, maxSpawnMessage)
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, maxSpawnMessage)
	}
	mine, theirs := os.NewFile(uintptr(fds[0]), "spawner"), os.NewFile(uintptr(fds[1]), "spawner-child")
	defer theirs.Close()
	cmd := &exec.Cmd{
		Path:       "/proc/self/exe",
		Args:       []string{"microbox-agent", spawnerArg},
		Env:        []string{},
		ExtraFiles: []*os.File{theirs},
		Stderr:     os.Stderr, // the console, with the agent's own log
	}
	if err := cmd.Start(); err != nil {
		mine.Close()
		return nil, fmt.Errorf("start the spawner: %w", err)
	}
	s := &spawner{cmd: cmd, sock: mine, replies: make(chan spawnReply, 1), exits: map[int]chan unix.WaitStatus{}, dead: make(chan struct{})}
	go s.read()
	return s, nil
}

// ErrSpawnerGone is returned when the spawner process has died.
var ErrSpawnerGone = errors.New("the spawner process is gone")

func (s *spawner) read() {
	defer close(s.dead)
	buf := make([]byte, 64<<10)
	for {
		n, _, _, _, err := unix.Recvmsg(int(s.sock.Fd()), buf, nil, 0)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil || n == 0 {
			return
		}
		var m spawnMessage
		if json.Unmarshal(buf[:n], &m) != nil {
			continue
		}
		if m.Exit != 0 {
			s.exitsMu.Lock()
			ch := s.exits[m.Exit]
			delete(s.exits, m.Exit)
			s.exitsMu.Unlock()
			if ch != nil {
				ch <- unix.WaitStatus(m.Status)
			}
			continue
		}
		// Register the exit channel before the next message is read: the
		// program's exit may be the very next one.
		var ch chan unix.WaitStatus
		if m.Pid > 0 {
			ch = make(chan unix.WaitStatus, 1)
			s.exitsMu.Lock()
			s.exits[m.Pid] = ch
			s.exitsMu.Unlock()
		}
		s.replies <- spawnReply{m, ch}
	}
}

// spawn starts a program with the given standard files and cgroup, and
// returns its pid and a channel that receives its exit status.
func (s *spawner) spawn(req spawnRequest, stdin, stdout, stderr, cgroup *os.File) (int, <-chan unix.WaitStatus, error) {
	b, err := json.Marshal(req)
	if err != nil {
		return 0, nil, err
	}
	if len(b) > maxSpawnMessage {
		return 0, nil, &spawnError{Step: "exec", Message: fmt.Sprintf("arguments and environment are %d bytes, more than %d", len(b), maxSpawnMessage)}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	rights := unix.UnixRights(int(stdin.Fd()), int(stdout.Fd()), int(stderr.Fd()), int(cgroup.Fd()))
	if err := unix.Sendmsg(int(s.sock.Fd()), b, rights, nil, 0); err != nil {
		return 0, nil, fmt.Errorf("%w: %v", ErrSpawnerGone, err)
	}
	select {
	case r := <-s.replies:
		if r.msg.Pid <= 0 {
			return 0, nil, &spawnError{Step: r.msg.Step, Message: r.msg.Error, ExecFormat: r.msg.ExecFormat}
		}
		return r.msg.Pid, r.exit, nil
	case <-s.dead:
		return 0, nil, ErrSpawnerGone
	}
}
