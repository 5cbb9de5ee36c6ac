// Package redisserver runs a private redis-server from Debian, on a Unix
// socket in a folder of its own, with AOF and appendfsync always so that an
// acknowledged submission survives a crash. `microbox serve` uses it when no
// Redis is configured, and tests use it through internal/redistest.
package redisserver

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
)

// ErrNotInstalled is returned when redis-server is not on PATH.
var ErrNotInstalled = errors.New("redis-server is not installed: apt-get install redis-server")

// Server is a running redis-server.
type Server struct {
	// Socket is the Unix socket it listens on (no TCP port).
	Socket string
	dir    string
	cmd    *exec.Cmd
}

// Start starts redis-server with its data and socket in dir and waits until
// it answers. It dies with the calling process (parent-death signal).
func Start(ctx context.Context, dir string) (*Server, error) {
	if _, err := exec.LookPath("redis-server"); err != nil {
		return nil, ErrNotInstalled
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	s := &Server{Socket: filepath.Join(dir, "redis.sock"), dir: dir}
	s.cmd = exec.Command("redis-server",
		"--port", "0", "--unixsocket", s.Socket, "--unixsocketperm", "700",
		"--dir", dir, "--appendonly", "yes", "--appendfsync", "always", "--save", "",
		"--logfile", filepath.Join(dir, "redis.log"))
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	if err := s.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start redis-server: %w", err)
	}
	c := s.Client()
	defer c.Close()
	deadline := time.Now().Add(10 * time.Second)
	for c.Ping(ctx).Err() != nil {
		if time.Now().After(deadline) || ctx.Err() != nil {
			s.Kill()
			return nil, fmt.Errorf("redis-server did not answer: see %s", filepath.Join(dir, "redis.log"))
		}
		time.Sleep(10 * time.Millisecond)
	}
	return s, nil
}

// Client returns a new client of the server.
func (s *Server) Client() *redis.Client {
	return redis.NewClient(&redis.Options{Network: "unix", Addr: s.Socket})
}

// Stop shuts it down cleanly (SIGTERM) and waits.
func (s *Server) Stop() {
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	_ = s.cmd.Wait()
}

// Kill kills it as a crash would (SIGKILL) and waits.
func (s *Server) Kill() {
	_ = s.cmd.Process.Kill()
	_ = s.cmd.Wait()
}
