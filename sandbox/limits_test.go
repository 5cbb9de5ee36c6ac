package sandbox

import (
	"testing"

	"microbox/languages"
	"microbox/vmm"
)

func TestLanguageScales(t *testing.T) {
	cpp, err := languages.Lookup("cpp")
	if err != nil {
		t.Fatal(err)
	}
	if cpp.TCGScale.Compile <= DefaultTCGTimeScale*DefaultTCGCompileFactor {
		t.Fatalf("cpp's measured compile scale %v is not above the default", cpp.TCGScale.Compile)
	}
	unmeasured := languages.Language{ID: "x"}
	def := Scales{Run: DefaultTCGTimeScale, Compile: DefaultTCGTimeScale * DefaultTCGCompileFactor}
	for _, tt := range []struct {
		name     string
		accel    vmm.Accel
		lang     languages.Language
		override Scales
		want     Scales
	}{
		{"kvm is native", vmm.AccelKVM, cpp, Scales{}, Scales{Run: 1, Compile: 1}},
		{"tcg, measured compile", vmm.AccelTCG, cpp, Scales{}, Scales{Run: DefaultTCGTimeScale, Compile: cpp.TCGScale.Compile}},
		{"tcg, not measured", vmm.AccelTCG, unmeasured, Scales{}, def},
		{"tcg, measured run", vmm.AccelTCG, languages.Language{TCGScale: languages.Scale{Run: 8}}, Scales{}, Scales{Run: 8, Compile: def.Compile}},
		{"operator's run scale carries to compiles", vmm.AccelTCG, cpp, Scales{Run: 3}, Scales{Run: 3, Compile: 3 * DefaultTCGCompileFactor}},
		{"operator's run scale under kvm", vmm.AccelKVM, cpp, Scales{Run: 2}, Scales{Run: 2, Compile: 2}},
		{"operator's both", vmm.AccelTCG, cpp, Scales{Run: 3, Compile: 7}, Scales{Run: 3, Compile: 7}},
		{"operator's compile only", vmm.AccelTCG, unmeasured, Scales{Compile: 7}, Scales{Run: DefaultTCGTimeScale, Compile: 7}},
	} {
		if got := LanguageScales(tt.accel, tt.lang, tt.override); got != tt.want {
			t.Errorf("%s: %+v, want %+v", tt.name, got, tt.want)
		}
	}
}
