package sandbox

import (
	"testing"
	"time"

	"microbox/languages"
	"microbox/vmm"
)

func TestLanguageScales(t *testing.T) {
	cpp, err := languages.Lookup("cpp")
	if err != nil {
		t.Fatal(err)
	}
	if cpp.TCGStart.Compile <= 0 || cpp.TCGScale.Run <= 1 {
		t.Fatalf("cpp has no measured compile start-up allowance or run scale: %+v %+v", cpp.TCGStart, cpp.TCGScale)
	}
	unmeasured := languages.Language{ID: "x"}
	started := languages.Language{ID: "y", TCGStart: languages.Start{Run: 4 * time.Second, Compile: 9 * time.Second}}
	def := Scales{Run: DefaultTCGTimeScale, Compile: DefaultTCGTimeScale * DefaultTCGCompileFactor}
	for _, tt := range []struct {
		name     string
		accel    vmm.Accel
		lang     languages.Language
		override Scales
		want     Scales
	}{
		{"kvm is native", vmm.AccelKVM, cpp, Scales{}, Scales{Run: 1, Compile: 1}},
		{"tcg, measured", vmm.AccelTCG, cpp, Scales{}, Scales{Run: cpp.TCGScale.Run, Compile: def.Compile,
			RunStart: cpp.TCGStart.Run, CompileStart: cpp.TCGStart.Compile}},
		{"tcg, not measured", vmm.AccelTCG, unmeasured, Scales{}, def},
		{"tcg, measured run", vmm.AccelTCG, languages.Language{TCGScale: languages.Scale{Run: 8}}, Scales{}, Scales{Run: 8, Compile: def.Compile}},
		{"start-up allowances under tcg", vmm.AccelTCG, started, Scales{}, Scales{Run: def.Run, Compile: def.Compile, RunStart: 4 * time.Second, CompileStart: 9 * time.Second}},
		{"no start-up allowance under kvm", vmm.AccelKVM, started, Scales{}, Scales{Run: 1, Compile: 1}},
		{"operator's scales keep the allowances", vmm.AccelTCG, started, Scales{Run: 3, Compile: 7}, Scales{Run: 3, Compile: 7, RunStart: 4 * time.Second, CompileStart: 9 * time.Second}},
		{"operator's run scale carries to compiles", vmm.AccelTCG, unmeasured, Scales{Run: 3}, Scales{Run: 3, Compile: 3 * DefaultTCGCompileFactor}},
		{"operator's run scale under kvm", vmm.AccelKVM, cpp, Scales{Run: 2}, Scales{Run: 2, Compile: 2}},
		{"operator's both", vmm.AccelTCG, unmeasured, Scales{Run: 3, Compile: 7}, Scales{Run: 3, Compile: 7}},
		{"operator's compile only", vmm.AccelTCG, unmeasured, Scales{Compile: 7}, Scales{Run: DefaultTCGTimeScale, Compile: 7}},
	} {
		if got := LanguageScales(tt.accel, tt.lang, tt.override); got != tt.want {
			t.Errorf("%s: %+v, want %+v", tt.name, got, tt.want)
		}
	}
}

// A start-up allowance is added after scaling, to the wall limit twice,
// and never turns a limit of none (a session process's 0) into one; the
// CPU time reported takes it off before scaling, and never goes below 0.
func TestWireStartAllowance(t *testing.T) {
	l := Limits{CPUTime: time.Second, WallTime: 2 * time.Second}
	w := l.wire(5, 3*time.Second)
	if w.CPUTime != 8*time.Second || w.WallTime != 16*time.Second {
		t.Errorf("wire(5, 3s) of %v/%v = %v/%v, want 8s/16s", l.CPUTime, l.WallTime, w.CPUTime, w.WallTime)
	}
	if w := (Limits{}).wire(5, 3*time.Second); w.CPUTime != 0 || w.WallTime != 0 {
		t.Errorf("no limits became %v/%v", w.CPUTime, w.WallTime)
	}
	res := Result{TimeScale: 5, StartAllowance: 3 * time.Second}
	for guest, want := range map[time.Duration]time.Duration{time.Second: 0, 3 * time.Second: 0, 8 * time.Second: time.Second} {
		if got := res.nativeCPU(guest); got != want {
			t.Errorf("nativeCPU(%v) = %v, want %v", guest, got, want)
		}
	}
}
