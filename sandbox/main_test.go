package sandbox

import (
	"fmt"
	"os"
	"testing"

	"microbox/internal/vmtest"
)

// TestMain checks, after every test ran, that no QEMU process, VM folder,
// mount or cgroup was left behind.
func TestMain(m *testing.M) {
	before := vmtest.Take()
	code := m.Run()
	if leaks := vmtest.Leaks(before, vmtest.Take()); len(leaks) > 0 {
		fmt.Fprintln(os.Stderr, "FAIL: the tests left these behind:")
		for _, l := range leaks {
			fmt.Fprintln(os.Stderr, "  "+l)
		}
		code = 1
	}
	os.Exit(code)
}
