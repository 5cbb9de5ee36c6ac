//go:build hostileagent

// Command agent is a hostile microbox guest agent, for tests only: it plays
// a guest whose kernel and PID 1 are the attacker's. It is built with
// -tags hostileagent by internal/hostileagent's tests, its attack fixed at
// link time (-ldflags "-X main.mode=flood"), and is never packed into the
// real initramfs (make agent builds cmd/microbox-agent).
package main

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"microbox/sandbox/protocol"
)

// mode is the attack (see attack).
var mode string

func main() {
	for _, m := range []struct{ src, dst, fs string }{{"proc", "/proc", "proc"}, {"sysfs", "/sys", "sysfs"}, {"devtmpfs", "/dev", "devtmpfs"}} {
		_ = os.MkdirAll(m.dst, 0o755)
		_ = unix.Mount(m.src, m.dst, m.fs, 0, "")
	}
	port := findPort()
	f, err := os.OpenFile(port, os.O_RDWR, 0)
	if err != nil {
		hang()
	}
	if mode == "result-first" {
		frame(f, protocol.TypeResult, 0, []byte(`{"run":{"exit_code":0}}`))
	}
	for {
		fr, err := protocol.ReadFrame(patient{f}, protocol.MaxHostPayload)
		if err != nil {
			time.Sleep(20 * time.Millisecond)
			continue
		}
		switch fr.Type {
		case protocol.TypePing, protocol.TypeResume:
			frame(f, protocol.TypeHello, 0, hello())
			if mode == "deaf" {
				hang() // never reads the console again
			}
		case protocol.TypeJob:
			attack(f)
		}
	}
}

func hello() []byte {
	h := protocol.Hello{Version: protocol.Version, Kernel: "6.6-hostile"}
	switch mode {
	case "version":
		h.Version = protocol.Version + 1000
	case "absurd-hello":
		h.Kernel = strings.Repeat("\x1b[2J", 100<<10)
	}
	b, _ := json.Marshal(h)
	return b
}

// attack answers a job as mode says.
func attack(f *os.File) {
	chunk := bytes.Repeat([]byte("flood "), protocol.ChunkSize/6)
	switch mode {
	case "oversize":
		hdr := header(protocol.TypeStdout, 0, protocol.MaxGuestPayload+1)
		_, _ = f.Write(append(hdr, chunk...))
	case "endless":
		// A frame that promises its cap and never comes.
		_, _ = f.Write(append(header(protocol.TypeStdout, 0, protocol.MaxGuestPayload), "the rest never comes"...))
	case "garbage":
		for {
			_, _ = f.Write(bytes.Repeat([]byte{0xee, 0x00, 0x42}, 4096))
		}
	case "flood":
		for {
			frame(f, protocol.TypeStdout, 0, chunk)
		}
	case "after-result":
		frame(f, protocol.TypeResult, 0, []byte(`{"run":{"exit_code":0}}`))
		for {
			frame(f, protocol.TypeStdout, 0, chunk)
		}
	case "wrong-stream":
		frame(f, protocol.TypeStdout, 7, []byte("a session's output during a job"))
	case "exit":
		os.Exit(3) // PID 1 exits: the guest kernel panics
	}
	hang()
}

func header(t protocol.Type, stream uint32, n int) []byte {
	h := []byte{byte(t)}
	h = binary.BigEndian.AppendUint32(h, stream)
	return binary.BigEndian.AppendUint32(h, uint32(n))
}

func frame(f *os.File, t protocol.Type, stream uint32, p []byte) {
	if err := protocol.WriteFrame(f, t, stream, p); err != nil {
		time.Sleep(20 * time.Millisecond) // the host went away: keep trying
	}
}

// hang blocks for good. Not select{}: with every goroutine blocked the Go
// runtime ends the program ("all goroutines are asleep"), and PID 1 would
// exit instead of hanging.
func hang() {
	for {
		time.Sleep(time.Hour)
	}
}

func findPort() string {
	for {
		names, _ := filepath.Glob("/sys/class/virtio-ports/*/name")
		for _, n := range names {
			if b, err := os.ReadFile(n); err == nil && strings.TrimSpace(string(b)) == protocol.PortName {
				dev := "/dev/" + filepath.Base(filepath.Dir(n))
				if _, err := os.Stat(dev); err == nil {
					return dev
				}
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// patient turns the port's EOF (no host connected yet) into a wait.
type patient struct{ f *os.File }

func (p patient) Read(b []byte) (int, error) {
	for {
		n, err := p.f.Read(b)
		if n > 0 || err != nil && err.Error() != "EOF" {
			return n, err
		}
		time.Sleep(20 * time.Millisecond)
	}
}
