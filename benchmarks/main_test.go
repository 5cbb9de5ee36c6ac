package benchmarks

import (
	"os"
	"testing"

	"microbox/internal/leakcheck"
	"microbox/jailer"
)

func TestMain(m *testing.M) {
	jailer.MaybeInit() // the test binary is also the jail's init step
	os.Exit(leakcheck.RunCheckingLeaks(m))
}
