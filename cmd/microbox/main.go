// Command microbox runs untrusted code in throwaway microVMs.
//
//	microbox serve [flags]                 the API and its workers
//	microbox run [flags] FILE [-- ARGS…]   run a source file in a fresh VM
//	microbox mcp --server URL              an MCP server on stdio, a client of serve
//	microbox languages                     list the built languages and versions
//	microbox images build [LANG…]          build language images (root)
//	microbox kernel build                  build the guest kernel
package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"microbox/internal/cache"
	"microbox/jailer"
	"microbox/languages"
)

const usage = `microbox runs untrusted code in throwaway microVMs.

Usage:
  microbox serve [flags]                   serve the API and run its jobs (Judge0-compatible)
  microbox api [flags]                     the API alone (needs MICROBOX_REDIS_URL)
  microbox worker [flags]                  workers alone (needs MICROBOX_REDIS_URL)
  microbox run [flags] FILE [-- ARGS...]   run FILE in a fresh microVM
  microbox mcp --server URL [--api-key K]  an MCP server on stdio for a running serve
  microbox languages                       list built languages and their versions
  microbox images build [LANG...]          build language images (needs root)
  microbox kernel build                    build the guest kernel

Run "microbox COMMAND -h" for a command's flags.
Environment: MICROBOX_CACHE (artifact cache, default ~/.cache/microbox),
MICROBOX_AGENT (guest agent binary, default: microbox-agent next to microbox).
`

// Exit codes of microbox itself; `microbox run` adds the program's own.
const (
	exitUsage    = 2
	exitInternal = 125
)

func main() {
	jailer.MaybeInit() // when started as a jail's init step, never returns
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	var err error
	code := 0
	switch args[0] {
	case "run":
		code, err = cmdRun(args[1:], stdout, stderr)
	case "serve":
		err = cmdServe(roleServe, args[1:], stdout, stderr)
	case "api":
		err = cmdServe(roleAPI, args[1:], stdout, stderr)
	case "worker":
		err = cmdServe(roleWorker, args[1:], stdout, stderr)
	case "mcp":
		err = cmdMCP(args[1:], stdout, stderr)
	case "languages":
		err = cmdLanguages(args[1:], stdout)
	case "images":
		err = cmdImages(args[1:], stdout, stderr)
	case "kernel":
		err = cmdKernel(args[1:], stdout, stderr)
	case "-h", "--help", "help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		err = usageError{fmt.Sprintf("unknown command %q", args[0])}
	}
	if err == nil {
		return code
	}
	fmt.Fprintf(stderr, "microbox: %s\n", oneLine(err))
	var ue usageError
	if errors.As(err, &ue) {
		return exitUsage
	}
	if code != 0 {
		return code
	}
	return exitInternal
}

// usageError is bad input from the command line: exit 2, no VM started.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

// oneLine keeps the first line of an error (and the diagnostics below it
// only when the first line alone says nothing useful).
func oneLine(err error) string {
	msg := err.Error()
	first, rest, found := strings.Cut(msg, "\n")
	if found && os.Getenv("MICROBOX_DEBUG") != "" {
		return first + "\n" + rest
	}
	// What follows the first line is a build's log or a VM's: say which.
	var be *languages.BuildError
	if found && errors.As(err, &be) {
		return first + " (set MICROBOX_DEBUG=1 for the end of its build log)"
	}
	if found {
		return first + " (set MICROBOX_DEBUG=1 for the VM's log)"
	}
	return first
}

func cacheDir() (string, error) { return cache.Dir() }

// agentPath finds the guest agent binary: $MICROBOX_AGENT, else
// microbox-agent next to this executable.
func agentPath() (string, error) {
	p := os.Getenv("MICROBOX_AGENT")
	if p == "" {
		exe, err := os.Executable()
		if err != nil {
			return "", err
		}
		p = filepath.Join(filepath.Dir(exe), "microbox-agent")
	}
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("guest agent not found at %s: build it with `make agent` or set MICROBOX_AGENT", p)
	}
	return p, nil
}

func newLogger(w io.Writer, verbose bool) *slog.Logger {
	level := slog.LevelWarn
	if verbose {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}))
}
