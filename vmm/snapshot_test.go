package vmm_test

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	"microbox/sandbox/protocol"
	"microbox/vmm"
)

// runIn runs a bash command line in the VM's agent and returns its stdout.
func runIn(t *testing.T, vm *vmm.VM, script string) string {
	t.Helper()
	job := protocol.Job{
		ID: "t", WorkDirSize: 64 << 20,
		Run: protocol.Step{Argv: []string{"bash", "-c", script}, Limits: protocol.Limits{
			CPUTime: 30 * time.Second, WallTime: 60 * time.Second, Memory: 256 << 20,
			Processes: 64, FileSize: 16 << 20, OpenFiles: 256, Stack: 8 << 20, Output: 1 << 20,
		}},
	}
	if err := protocol.NewWriter(vm.Agent()).JSON(protocol.TypeJob, 0, job); err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	for {
		f, err := protocol.ReadFrame(vm.Agent(), protocol.MaxGuestPayload)
		if err != nil {
			t.Fatalf("read: %v\n%s", err, vm.Console())
		}
		typ, payload := f.Type, f.Payload
		switch typ {
		case protocol.TypeStdout:
			out.Write(payload)
		case protocol.TypeStderr:
			t.Logf("stderr: %s", payload)
		case protocol.TypeResult:
			var r protocol.Result
			if err := json.Unmarshal(payload, &r); err != nil {
				t.Fatal(err)
			}
			if r.Run == nil || r.Run.ExitCode != 0 {
				t.Fatalf("%q: %s", script, payload)
			}
			return out.String()
		default:
			t.Fatalf("%s frame: %s", typ, payload)
		}
	}
}

func buildSnapshot(t *testing.T, cfg vmm.Config) *vmm.Snapshot {
	t.Helper()
	start := time.Now()
	snap, err := vmm.BuildSnapshot(context.Background(), cfg, func(vm *vmm.VM) error {
		runIn(t, vm, "echo warm")
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { snap.Close() })
	t.Logf("snapshot in %v (save %v), RAM %d MiB", time.Since(start), snap.SaveTime, snap.RAMBytes()>>20)
	return snap
}

func restore(t *testing.T, cfg vmm.Config, snap *vmm.Snapshot) *vmm.VM {
	t.Helper()
	vm, err := vmm.Restore(context.Background(), cfg, snap)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { vm.Close() })
	took, err := vm.Resume(10 * time.Second)
	if err != nil {
		t.Fatalf("resume: %v\n%s", err, vm.Console())
	}
	t.Logf("restore %v, resume %v", vm.BootTime, took)
	return vm
}

// Two clones of one snapshot share nothing a job can see: a file the first
// writes, random bytes, a new process's stack address.
func TestClonesAreIndependent(t *testing.T) {
	cfg := testConfig(t)
	snap := buildSnapshot(t, cfg)
	a, b := restore(t, cfg, snap), restore(t, cfg, snap)

	runIn(t, a, "echo secret > /tmp/left-behind")
	if got := runIn(t, b, "cat /tmp/left-behind 2>/dev/null || echo absent"); got != "absent\n" {
		t.Fatalf("second clone sees the first's file: %q", got)
	}
	probe := "head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \\n'; echo; grep -m1 stack /proc/self/maps | cut -d- -f1"
	pa, pb := runIn(t, a, probe), runIn(t, b, probe)
	la, lb := strings.Split(pa, "\n"), strings.Split(pb, "\n")
	if len(la) < 2 || len(lb) < 2 {
		t.Fatalf("probe output %q, %q", pa, pb)
	}
	if la[0] == lb[0] {
		t.Fatalf("clones read the same /dev/urandom bytes: %s", la[0])
	}
	if la[1] == lb[1] {
		t.Fatalf("clones' new processes have the same stack address %s", la[1])
	}
}

// A clone that sat paused keeps a clock within a second of the host's once
// it resumes.
func TestCloneClockIsCurrent(t *testing.T) {
	cfg := testConfig(t)
	snap := buildSnapshot(t, cfg)
	vm, err := vmm.Restore(context.Background(), cfg, snap)
	if err != nil {
		t.Fatal(err)
	}
	defer vm.Close()
	time.Sleep(5 * time.Second)
	if _, err := vm.Resume(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	before := time.Now()
	out := runIn(t, vm, "date +%s.%N")
	after := time.Now()
	sec, err := strconv.ParseFloat(strings.TrimSpace(out), 64)
	if err != nil {
		t.Fatal(err)
	}
	guest := time.Unix(0, int64(sec*1e9))
	if guest.Before(before.Add(-time.Second)) || guest.After(after.Add(time.Second)) {
		t.Fatalf("guest clock %v, host between %v and %v", guest, before, after)
	}
}
