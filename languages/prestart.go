package languages

import (
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"strings"
)

// Prestart is a process that every session of a language starts with,
// started before the language's session snapshot is taken, so that a
// session restored from it finds the process already running and past
// its start-up (a Python kernel with its libraries imported). The host
// attaches to it after the restore; what it needs to be told then (every
// clone shares its memory, random state included) is Attach.
type Prestart struct {
	// Tag names the process among the session's, for the front end that
	// drives it (E2B's code interpreter finds its kernel by it).
	Tag string
	// Argv is run in the work dir, with Env added to the session's.
	Argv []string
	Env  []string
	// Files are written before it starts.
	Files []File
	// Ready is the line (without its newline) the process prints on its
	// stdout once it has started up: the snapshot is taken after it.
	Ready string
	// Attach is written to its stdin when a session restored from the
	// snapshot takes it, after the guest's random generator was reseeded;
	// empty for nothing.
	Attach string
}

// File is a file of a Prestart.
type File struct {
	Path string // absolute, in the work dir
	Data []byte
	Mode uint32
}

// Key identifies what the process is: a session snapshot of another one
// is another snapshot.
func (p *Prestart) Key() string {
	h := sha256.New()
	for _, s := range append(append([]string{p.Tag, p.Ready, p.Attach}, p.Argv...), p.Env...) {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	for _, f := range p.Files {
		h.Write([]byte(f.Path))
		h.Write([]byte{0, byte(f.Mode >> 8), byte(f.Mode)})
		h.Write(f.Data)
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}

// PythonKernel is microbox's stateful Python kernel (python_kernel.py):
// cells in on its stdin, one JSON object a line, their output, results,
// figures and errors out on its stdout. E2B's code interpreter runs its
// cells in it, and MCP's exec in the sessions of a language that
// pre-starts it.
//
//go:embed python_kernel.py
var PythonKernel []byte

// Where a session's kernel program is written, and the tag of the one a
// session pre-starts.
const (
	PythonKernelPath = "/box/.microbox/python-kernel.py"
	PythonKernelTag  = "python-kernel"
)

// PythonKernelEnv is the environment of every kernel: figures drawn with
// Agg, output unbuffered.
var PythonKernelEnv = []string{"MPLBACKEND=Agg", "PYTHONUNBUFFERED=1"}

// pythonKernel is a session's pre-started kernel with the given modules
// imported (into sys.modules, not into the cells' namespace); once
// attached it reseeds Python's and NumPy's random generators from the
// guest's, which the resume reseeded from the host.
func pythonKernel(preload ...string) *Prestart {
	argv := []string{"python3", "-u", PythonKernelPath}
	if len(preload) > 0 {
		argv = append(argv, "--preload", strings.Join(preload, ","))
	}
	return &Prestart{
		Tag: PythonKernelTag, Argv: argv, Env: PythonKernelEnv,
		Files:  []File{{Path: PythonKernelPath, Data: PythonKernel, Mode: 0o644}},
		Ready:  `{"type": "ready", "id": null}`,
		Attach: `{"op": "reseed", "id": "attach"}` + "\n",
	}
}
