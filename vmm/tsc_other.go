//go:build !amd64

package vmm

// hostTSCkHz is 0 off amd64: the guest is left to find its clock.
func hostTSCkHz() int { return 0 }
