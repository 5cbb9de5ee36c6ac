package vmm

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestBuildInitramfsCachedByAgent(t *testing.T) {
	dir := t.TempDir()
	agent := filepath.Join(dir, "agent")
	if err := os.WriteFile(agent, []byte("#!agent v1"), 0o755); err != nil {
		t.Fatal(err)
	}
	p1, err := BuildInitramfs(dir, agent)
	if err != nil {
		t.Fatal(err)
	}
	p2, err := BuildInitramfs(dir, agent)
	if err != nil || p1 != p2 {
		t.Fatalf("second build: %q, %v; want %q", p2, err, p1)
	}
	if err := os.WriteFile(agent, []byte("#!agent v2"), 0o755); err != nil {
		t.Fatal(err)
	}
	p3, err := BuildInitramfs(dir, agent)
	if err != nil {
		t.Fatal(err)
	}
	if p3 == p1 {
		t.Fatal("a changed agent must give a new initramfs")
	}
	if _, err := BuildInitramfs(dir, filepath.Join(dir, "missing")); err == nil {
		t.Fatal("a missing agent must be an error")
	}
}

// TestCPIOReadableByCpio checks our writer against GNU cpio, when installed.
func TestCPIOReadableByCpio(t *testing.T) {
	if _, err := exec.LookPath("cpio"); err != nil {
		t.Skip("cpio not installed")
	}
	var buf bytes.Buffer
	if err := writeCPIO(&buf, initramfsEntries([]byte("hello agent"))); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("cpio", "-t", "-v")
	cmd.Stdin = &buf
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("cpio -t: %v\n%s", err, out)
	}
	for _, want := range []string{"init", "dev/console", "mnt/root", "crw-------"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("cpio listing lacks %q:\n%s", want, out)
		}
	}
}
