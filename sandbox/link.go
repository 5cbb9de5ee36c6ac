package sandbox

import (
	"errors"
	"net"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// link is a session's byte stream to its agent, across the VMs that carry
// it: a paused session's QEMU is gone and a resumed one is a new process
// with a new socket, but the stream of frames must go on where it stopped,
// even in the middle of a frame. While the link is held, writes wait and
// the end of the old connection is not the end of the stream: reads wait
// for the next connection.
type link struct {
	mu      sync.Mutex
	cond    *sync.Cond
	conn    net.Conn
	held    bool
	closed  bool
	writing int // writes under way (protocol.Writer makes it at most one)
}

func newLink(c net.Conn) *link {
	l := &link{conn: c}
	l.cond = sync.NewCond(&l.mu)
	return l
}

// errLinkClosed is the end of a link that is not coming back.
var errLinkClosed = errors.New("the session's connection to its agent is closed")

func (l *link) current() (net.Conn, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil, errLinkClosed
	}
	return l.conn, nil
}

// Read reads from the current connection; while the link is held, the
// end of that connection is not the end of the stream: it waits for the
// next one and goes on there.
func (l *link) Read(p []byte) (int, error) {
	for {
		c, err := l.current()
		if err != nil {
			return 0, err
		}
		n, err := c.Read(p)
		if n > 0 || err == nil {
			return n, nil
		}
		l.mu.Lock()
		for l.held && l.conn == c && !l.closed {
			l.cond.Wait()
		}
		swapped, closed := l.conn != c, l.closed
		l.mu.Unlock()
		if closed {
			return 0, errLinkClosed
		}
		if !swapped {
			return 0, err
		}
	}
}

// Write writes one frame's bytes, bounded by writeTimeout: a guest that
// stops reading its port is broken, and would otherwise hang the host.
// While the link is held it waits.
func (l *link) Write(p []byte) (int, error) {
	l.mu.Lock()
	for l.held && !l.closed {
		l.cond.Wait()
	}
	if l.closed {
		l.mu.Unlock()
		return 0, errLinkClosed
	}
	c := l.conn
	l.writing++
	l.mu.Unlock()
	defer func() {
		l.mu.Lock()
		l.writing--
		l.mu.Unlock()
		l.cond.Broadcast()
	}()
	_ = c.SetWriteDeadline(time.Now().Add(writeTimeout))
	return c.Write(p)
}

// hold stops writes (waiting for one under way), so that nothing the host
// sends is left in a socket about to close, and makes the current
// connection's end not the stream's. Reads go on: what the guest sent
// before it stopped is still read.
func (l *link) hold() {
	l.mu.Lock()
	l.held = true
	for l.writing > 0 {
		l.cond.Wait()
	}
	l.mu.Unlock()
}

// swap puts the stream on a new connection and lets it flow again.
func (l *link) swap(c net.Conn) {
	l.mu.Lock()
	l.conn, l.held = c, false
	l.mu.Unlock()
	l.cond.Broadcast()
}

// release lets the stream flow again on the connection it had (a pause
// that failed).
func (l *link) release() {
	l.mu.Lock()
	l.held = false
	l.mu.Unlock()
	l.cond.Broadcast()
}

func (l *link) close() {
	l.mu.Lock()
	l.closed = true
	l.mu.Unlock()
	l.cond.Broadcast()
}

// queued returns the bytes the host wrote that the other end has not read
// yet (SIOCOUTQ), and the bytes that wait for the host to read (SIOCINQ).
func queued(c net.Conn) (out, in int, err error) {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return 0, 0, errors.New("not a Unix socket")
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return 0, 0, err
	}
	var ierr error
	cerr := raw.Control(func(fd uintptr) {
		if out, ierr = unix.IoctlGetInt(int(fd), unix.SIOCOUTQ); ierr == nil {
			in, ierr = unix.IoctlGetInt(int(fd), unix.SIOCINQ)
		}
	})
	return out, in, errors.Join(cerr, ierr)
}

// drained waits until the connection has nothing queued either way, at
// most timeout: what the host sent is in the guest's device (migrated with
// it), and what the guest sent has been read.
func (l *link) drained(timeout time.Duration) error {
	l.mu.Lock()
	c := l.conn
	l.mu.Unlock()
	deadline := time.Now().Add(timeout)
	for {
		out, in, err := queued(c)
		if err != nil {
			return err
		}
		if out == 0 && in == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return errors.New("the agent's connection did not drain: the guest does not read its port, or the host's consumers are stuck")
		}
		time.Sleep(2 * time.Millisecond)
	}
}
