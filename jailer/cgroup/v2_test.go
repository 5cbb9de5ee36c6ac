package cgroup

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opencontainers/cgroups"
	"github.com/opencontainers/cgroups/fs2"
)

// The files a jail's cgroup v2 gets, written by the same library and
// resources as on a v2 host, into a scratch folder standing in for the
// cgroup (this host's controllers are bound to v1). memory.swap.max is 0:
// QEMU is never swapped out at its limit, it is OOM-killed. What this
// cannot show (that the kernel enforces them, moving a process in, the
// controller set-up in the parents, removal of a populated cgroup)
// TestCgroupV2InGuest shows in a guest, whose kernel is v2.
func TestCgroupV2Files(t *testing.T) {
	cgroups.TestMode = true // files in a plain folder, as cgroupfs would have them
	defer func() { cgroups.TestMode = false }()
	tests := []struct {
		name  string
		l     Limits
		files map[string]string // "" : must not be written
	}{
		{"all limits", Limits{Memory: 768 << 20, CPUs: 1.5, Pids: 64},
			map[string]string{"memory.max": "805306368", "cpu.max": "150000 100000", "pids.max": "64", "memory.swap.max": "0"}},
		{"a whole core", Limits{Memory: 256 << 20, CPUs: 1, Pids: 16},
			map[string]string{"memory.max": "268435456", "cpu.max": "100000 100000", "pids.max": "16", "memory.swap.max": "0"}},
		{"no limits", Limits{},
			map[string]string{"memory.max": "", "cpu.max": "", "pids.max": "", "memory.swap.max": ""}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, "cgroup.controllers"), []byte("cpu memory pids\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			res := resources(tt.l)
			m, err := fs2.NewManager(&cgroups.Cgroup{Resources: res}, dir)
			if err != nil {
				t.Fatal(err)
			}
			if err := m.Set(res); err != nil {
				t.Fatal(err)
			}
			for name, want := range tt.files {
				b, err := os.ReadFile(filepath.Join(dir, name))
				switch {
				case want == "" && err == nil:
					t.Errorf("%s written: %q", name, b)
				case want != "" && err != nil:
					t.Errorf("%s: %v", name, err)
				case want != "" && strings.TrimSpace(string(b)) != want:
					t.Errorf("%s = %q, want %q", name, b, want)
				}
			}
			// Device rules are the jail's /dev's job, never a BPF program.
			if !res.SkipDevices {
				t.Error("device rules are set")
			}
		})
	}
}
