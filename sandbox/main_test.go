package sandbox

import (
	"os"
	"testing"

	"microbox/internal/leakcheck"
	"microbox/jailer"
)

// TestMain fails the package if its tests left a QEMU process, VM folder,
// mount or cgroup behind.
func TestMain(m *testing.M) {
	jailer.MaybeInit() // the test binary is also the jail's init step
	os.Exit(leakcheck.RunCheckingLeaks(m))
}
