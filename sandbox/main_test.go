package sandbox

import (
	"os"
	"testing"

	"microbox/internal/vmtest"
)

// TestMain fails the package if its tests left a QEMU process, VM folder,
// mount or cgroup behind.
func TestMain(m *testing.M) { os.Exit(vmtest.RunCheckingLeaks(m)) }
