package sandbox

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"microbox/vmm"
)

// sharedVM boots one VM and runs several jobs in it, to test what the agent
// keeps (nothing) from one job to the next. Run itself never reuses a VM.
type sharedVM struct {
	t  *testing.T
	r  *Runner
	vm *vmm.VM
}

func bootShared(t *testing.T, lang string) *sharedVM {
	t.Helper()
	r := newRunner(t, lang, 1)
	p, err := r.prepare(Job{Language: lang, Source: []byte("true")})
	if err != nil {
		t.Fatal(err)
	}
	vm, err := r.boot(context.Background(), p.image, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { vm.Close() })
	return &sharedVM{t: t, r: r, vm: vm}
}

func (s *sharedVM) run(job Job) Result {
	s.t.Helper()
	p, err := s.r.prepare(job)
	if err != nil {
		s.t.Fatal(err)
	}
	res, err := s.r.exchange(context.Background(), s.vm, p, slog.New(slog.DiscardHandler))
	if err != nil {
		s.t.Fatal(err)
	}
	return res
}

func TestForkBombContainedAndAgentServesNext(t *testing.T) {
	s := bootShared(t, "bash")
	bomb := Job{Language: "bash", Source: []byte(`bomb() { bomb | bomb & }; bomb; sleep 3; echo done`),
		Limits: Limits{Processes: 32, WallTime: 8 * time.Second}}
	res := s.run(bomb)
	t.Logf("fork bomb: %s (%s), wall %v, cpu %v", res.Status.Description, res.Message, res.WallTime, res.CPUTime)
	if res.Status == StatusInternalError || res.Status.ID < StatusAccepted.ID {
		t.Fatalf("fork bomb: no verdict: %+v", res.Status)
	}
	if !strings.Contains(res.Message, "process limit") && res.Status != StatusTimeLimit && res.Status != StatusAccepted {
		t.Fatalf("fork bomb verdict %q (%s) does not mention the process limit", res.Status.Description, res.Message)
	}
	next := s.run(Job{Language: "bash", Source: []byte(`echo alive; ps -e 2>/dev/null | wc -l; ls /proc | grep -c '^[0-9]'`)})
	wantStatus(t, next, StatusAccepted)
	lines := strings.Fields(string(next.Stdout))
	if len(lines) < 2 || lines[0] != "alive" {
		t.Fatalf("next job: %q", next.Stdout)
	}
	// hidepid: the next program sees only itself and its own children.
	if n := lines[len(lines)-1]; n != "2" && n != "3" {
		t.Fatalf("the next job sees %s processes: the bomb survived its job", n)
	}
}

func TestFilesDoNotSurviveAJob(t *testing.T) {
	s := bootShared(t, "bash")
	write := s.run(Job{Language: "bash", Source: []byte(`echo secret > /box/left; echo secret > /tmp/left; echo secret > /dev/shm/left; ls /box`)})
	wantStatus(t, write, StatusAccepted)
	if !strings.Contains(string(write.Stdout), "left") {
		t.Fatalf("first job could not write: %q", write.Stdout)
	}
	read := s.run(Job{Language: "bash", Source: []byte(`cat /box/left /tmp/left /dev/shm/left 2>&1; ls -A /box /tmp /dev/shm`)})
	if strings.Contains(string(read.Stdout), "secret") || strings.Contains(string(read.Stdout), "left\n") {
		t.Fatalf("a file written by the first job reached the second: %q", read.Stdout)
	}
}

func TestImageIsReadOnly(t *testing.T) {
	res := run(t, Job{Language: "bash", Source: []byte(`touch /usr/bin/x 2>&1; echo > /etc/passwd 2>&1; echo rc=$?`)})
	if !strings.Contains(string(res.Stdout), "Read-only file system") || strings.Contains(string(res.Stdout), "rc=0") {
		t.Fatalf("the image is writable: %q", res.Stdout)
	}
}

// TestQEMUIsJailed looks at the real QEMU process from the host while it
// runs a job: unprivileged, no capabilities, no_new_privs, seccomp filter,
// and pid, net and mount namespaces of its own.
func TestQEMUIsJailed(t *testing.T) {
	s := bootShared(t, "bash")
	done := make(chan Result, 1)
	go func() { done <- s.run(Job{Language: "bash", Source: []byte("sleep 2; echo ok")}) }()
	time.Sleep(500 * time.Millisecond)
	pid := s.vm.Pid()
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	field := func(name string) string {
		for _, line := range strings.Split(string(status), "\n") {
			if v, ok := strings.CutPrefix(line, name+":"); ok {
				return strings.TrimSpace(v)
			}
		}
		return ""
	}
	uid := strings.Fields(field("Uid"))
	if len(uid) != 4 || uid[0] == "0" || uid[0] != uid[1] || uid[0] != uid[2] || uid[0] != uid[3] {
		t.Errorf("Uid %q: want one unprivileged uid", field("Uid"))
	}
	for name, want := range map[string]string{"NoNewPrivs": "1", "Seccomp": "2", "CapEff": "0000000000000000", "CapPrm": "0000000000000000"} {
		if got := field(name); got != want {
			t.Errorf("%s = %q, want %q", name, got, want)
		}
	}
	for _, ns := range []string{"pid", "net", "mnt", "ipc", "uts"} {
		host, _ := os.Readlink("/proc/self/ns/" + ns)
		vm, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/%s", pid, ns))
		if err != nil || vm == host {
			t.Errorf("%s namespace of QEMU %q is the host's %q (%v)", ns, vm, host, err)
		}
	}
	if res := <-done; res.Status != StatusAccepted || string(res.Stdout) != "ok\n" {
		t.Fatalf("job in the jailed VM: %s %q", res.Status.Description, res.Stdout)
	}
}
