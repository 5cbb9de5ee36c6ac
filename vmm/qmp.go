package vmm

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// QMP is a minimal client of QEMU's machine protocol: one command at a time,
// asynchronous events skipped.
type QMP struct {
	mu   sync.Mutex
	conn net.Conn
	r    *bufio.Reader
}

// QMPError is an error answer from QEMU.
type QMPError struct {
	Class string `json:"class"`
	Desc  string `json:"desc"`
}

func (e *QMPError) Error() string { return "qmp: " + e.Class + ": " + e.Desc }

type qmpMessage struct {
	Return json.RawMessage `json:"return"`
	Error  *QMPError       `json:"error"`
	Event  string          `json:"event"`
	QMP    json.RawMessage `json:"QMP"`
}

// dialQMP connects to a QMP socket and leaves capabilities negotiation mode.
func dialQMP(path string, timeout time.Duration) (*QMP, error) {
	conn, err := net.DialTimeout("unix", path, timeout)
	if err != nil {
		return nil, err
	}
	q := &QMP{conn: conn, r: bufio.NewReader(conn)}
	_ = conn.SetDeadline(time.Now().Add(timeout))
	var greeting qmpMessage
	if err := q.read(&greeting); err != nil || greeting.QMP == nil {
		conn.Close()
		return nil, fmt.Errorf("qmp greeting: %v", err)
	}
	if _, err := q.exec("qmp_capabilities", nil); err != nil {
		conn.Close()
		return nil, err
	}
	_ = conn.SetDeadline(time.Time{})
	return q, nil
}

func (q *QMP) read(m *qmpMessage) error {
	line, err := q.r.ReadBytes('\n')
	if err != nil {
		return err
	}
	return json.Unmarshal(line, m)
}

// Execute runs one command and returns its "return" value.
func (q *QMP) Execute(command string, args any, timeout time.Duration) (json.RawMessage, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	_ = q.conn.SetDeadline(time.Now().Add(timeout))
	defer q.conn.SetDeadline(time.Time{})
	return q.exec(command, args)
}

// SendFD hands f to QEMU under name (QMP getfd), for a later "fd:name"
// migration URI. QEMU keeps its own copy; the caller may close f.
func (q *QMP) SendFD(name string, f *os.File, timeout time.Duration) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	uc, ok := q.conn.(*net.UnixConn)
	if !ok {
		return errors.New("qmp: passing a descriptor needs a Unix socket")
	}
	_ = q.conn.SetDeadline(time.Now().Add(timeout))
	defer q.conn.SetDeadline(time.Time{})
	b, err := json.Marshal(map[string]any{"execute": "getfd", "arguments": map[string]string{"fdname": name}})
	if err != nil {
		return err
	}
	// The descriptor travels with the command's bytes (SCM_RIGHTS).
	if _, _, err := uc.WriteMsgUnix(append(b, '\n'), unix.UnixRights(int(f.Fd())), nil); err != nil {
		return fmt.Errorf("qmp getfd: %w", err)
	}
	_, err = q.answer("getfd")
	return err
}

func (q *QMP) exec(command string, args any) (json.RawMessage, error) {
	req := map[string]any{"execute": command}
	if args != nil {
		req["arguments"] = args
	}
	b, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	if _, err := q.conn.Write(append(b, '\n')); err != nil {
		return nil, fmt.Errorf("qmp %s: %w", command, err)
	}
	return q.answer(command)
}

// answer reads up to the reply of the command just sent, skipping events.
func (q *QMP) answer(command string) (json.RawMessage, error) {
	for {
		var m qmpMessage
		if err := q.read(&m); err != nil {
			return nil, fmt.Errorf("qmp %s: %w", command, err)
		}
		switch {
		case m.Event != "":
			continue
		case m.Error != nil:
			return nil, m.Error
		case m.Return != nil:
			return m.Return, nil
		}
		return nil, errors.New("qmp: answer with neither return nor error")
	}
}

// Close closes the connection.
func (q *QMP) Close() error { return q.conn.Close() }
