package vmm

import (
	"reflect"
	"strings"
	"testing"
)

func TestMissingOptions(t *testing.T) {
	fragment := "# comment\nCONFIG_A=y\nCONFIG_B=y\nCONFIG_C=y\n"
	config := "CONFIG_A=y\n# CONFIG_B is not set\nCONFIG_C=m\n"
	got := missingOptions(fragment, config)
	if want := []string{"CONFIG_B", "CONFIG_C"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("missingOptions = %v, want %v", got, want)
	}
	if got := missingOptions(fragment, "CONFIG_A=y\nCONFIG_B=y\nCONFIG_C=y\n"); len(got) != 0 {
		t.Fatalf("all present: got %v", got)
	}
}

// TestFragmentNamesWhatTheGuestNeeds guards the options the agent and the
// runtimes depend on against an edit that drops one.
func TestFragmentNamesWhatTheGuestNeeds(t *testing.T) {
	for _, opt := range []string{
		"PVH", "VIRTIO_MMIO_CMDLINE_DEVICES", "VIRTIO_BLK", "VIRTIO_CONSOLE", "EXT4_FS",
		"BLK_DEV_INITRD", "DEVTMPFS", "TMPFS", "UNIX", "FUTEX", "EPOLL", "MEMCG", "CGROUP_PIDS",
		"SLUB", "SECCOMP", "HW_RANDOM_VIRTIO",
	} {
		if !strings.Contains(kernelFragment, "\nCONFIG_"+opt+"=y\n") {
			t.Errorf("fragment lacks CONFIG_%s=y", opt)
		}
	}
	if strings.Contains(kernelFragment, "CONFIG_INET=y") {
		t.Error("the guest must have no IP networking")
	}
}
