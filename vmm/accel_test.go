package vmm

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestParseAccel(t *testing.T) {
	tests := []struct {
		in      string
		want    Accel
		wantErr bool
	}{
		{"", AccelAuto, false},
		{"auto", AccelAuto, false},
		{"KVM", AccelKVM, false},
		{"tcg", AccelTCG, false},
		{"hvf", "", true},
	}
	for _, tt := range tests {
		got, err := ParseAccel(tt.in)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("ParseAccel(%q) = %q, %v; want %q, error %v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestResolve(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	vmx := write("cpuinfo-vmx", "processor\t: 0\nflags\t\t: fpu vme vmx sse2\n")
	svm := write("cpuinfo-svm", "processor\t: 0\nflags\t\t: fpu svm\n")
	plain := write("cpuinfo-pvm", "processor\t: 0\nflags\t\t: fpu vme sse2 hypervisor\n")
	dev := write("kvm", "") // an openable stand-in for /dev/kvm
	missing := filepath.Join(dir, "no-kvm")

	tests := []struct {
		name    string
		host    Host
		in      Accel
		want    Accel
		wantErr error
	}{
		{"auto with vmx and kvm", Host{vmx, dev}, AccelAuto, AccelKVM, nil},
		{"auto with svm and kvm", Host{svm, dev}, AccelAuto, AccelKVM, nil},
		{"auto on PVM (kvm opens, no flag)", Host{plain, dev}, AccelAuto, AccelTCG, nil},
		{"auto without /dev/kvm", Host{vmx, missing}, AccelAuto, AccelTCG, nil},
		{"kvm asked on PVM", Host{plain, dev}, AccelKVM, "", ErrNoKVM},
		{"kvm asked without device", Host{vmx, missing}, AccelKVM, "", ErrNoKVM},
		{"tcg always", Host{plain, missing}, AccelTCG, AccelTCG, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.host.Resolve(tt.in)
			if !errors.Is(err, tt.wantErr) || got != tt.want {
				t.Fatalf("Resolve(%q) = %q, %v; want %q, %v", tt.in, got, err, tt.want, tt.wantErr)
			}
		})
	}
}
