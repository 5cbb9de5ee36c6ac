package agent

import (
	"testing"
	"time"
)

func TestThrashing(t *testing.T) {
	t0 := time.Unix(0, 0)
	tick := 10 * time.Millisecond
	tests := []struct {
		name      string
		stallRate float64 // share of each tick stalled on memory
		hitsPer   int64   // memory.max hits per tick
		ticks     int
		want      bool
	}{
		{"idle", 0, 0, 100, false},
		{"stalled without hitting the limit", 0.9, 0, 100, false},
		{"at the limit, little stall", 0.2, 3, 100, false},
		{"thrashing", 0.8, 3, 100, true},
		{"thrashing, but not for a whole window yet", 0.8, 3, 20, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var h []memSample
			var got bool
			for i := 0; i <= tt.ticks; i++ {
				s := memSample{
					at:    t0.Add(time.Duration(i) * tick),
					stall: time.Duration(float64(time.Duration(i)*tick) * tt.stallRate),
					hits:  int64(i) * tt.hitsPer,
				}
				h, got = thrashing(h, s)
				if got {
					break
				}
			}
			if got != tt.want {
				t.Fatalf("thrashing = %v, want %v", got, tt.want)
			}
			if len(h) > int(thrashWindow/tick)+3 {
				t.Fatalf("history grew to %d samples", len(h))
			}
		})
	}
}
