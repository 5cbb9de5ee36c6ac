package cgroup

import (
	"os"
	"strconv"
	"testing"

	"microbox/internal/leakcheck"
)

// The package fails if its tests left a cgroup (or a VM) behind.
func TestMain(m *testing.M) { os.Exit(leakcheck.RunCheckingLeaks(m)) }

// requireRoot skips without root, or fails under MICROBOX_REQUIRE_VM=1 (CI
// runs as root, so a skip there would hide a broken cgroup).
func requireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	// MICROBOX_REQUIRE_VM is vmtest.EnvRequire (vmtest imports package
	// jailer, which imports this one).
	if os.Getenv("MICROBOX_REQUIRE_VM") == "1" {
		t.Fatal("cgroup tests need root")
	}
	t.Skip("cgroup tests need root")
}

// testID names a test's cgroup as jailer.NewID names a jail's: after this
// process, so that a worker's CleanStale running meanwhile leaves it
// alone and leakcheck sees it if it is left.
func testID(name string) string {
	return strconv.Itoa(os.Getpid()) + "-" + name
}
