package vmm

import (
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

func rdtsc() uint64

// hostTSCkHz is the host's TSC rate in kHz, rounded to a whole MHz, or 0
// when it cannot be had.
//
// Why a guest needs it: under TCG the guest's RDTSC reads the host's TSC,
// but the guest kernel cannot calibrate it (microvm has no HPET or ACPI PM
// timer, and calibrating against the PIT fails under TCG's timing), marks
// the TSC unstable and keeps time by counting timer interrupts, which a
// loaded host loses: its clock was seen running at half speed, and every
// wall time a guest measures with it. Told the rate (tsc_early_khz), it
// keeps time by the TSC. The rate is rounded to a MHz so that the kernel
// command line, part of every snapshot's key, is the same at every start;
// the error (at most 0.05 %) only matters between two clock settings
// (each resume sets the guest's clock from the host's).
var hostTSCkHz = sync.OnceValue(func() int {
	if !constantTSC() {
		return 0
	}
	measure := func() float64 {
		var t0, t1 unix.Timespec
		_ = unix.ClockGettime(unix.CLOCK_MONOTONIC_RAW, &t0)
		c0 := rdtsc()
		time.Sleep(25 * time.Millisecond)
		c1 := rdtsc()
		_ = unix.ClockGettime(unix.CLOCK_MONOTONIC_RAW, &t1)
		ns := float64(t1.Nano() - t0.Nano())
		return float64(c1-c0) / ns * 1e6 // kHz
	}
	a, b := measure(), measure()
	mhz := func(khz float64) int { return int(khz/1000+0.5) * 1000 }
	if mhz(a) != mhz(b) {
		// On a MHz boundary, or the host was busy: a third says which.
		return mhz(measure())
	}
	return mhz(a)
})

// constantTSC says whether the host's TSC ticks at one rate whatever the
// CPU's frequency and sleep states: only then is a rate worth telling.
func constantTSC() bool {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return false
	}
	for line := range strings.Lines(string(b)) {
		if f, ok := strings.CutPrefix(line, "flags"); ok {
			fields := strings.Fields(f)
			return slices.Contains(fields, "constant_tsc") && slices.Contains(fields, "nonstop_tsc")
		}
	}
	return false
}
