// Package benchmarks measures microbox's latency with real VMs: cold boot to
// agent-ready, and a hello world end to end through sandbox.Run. Each
// benchmark reports the median and p90 of its samples, since these machines
// are noisy; run them with `make bench`.
package benchmarks
