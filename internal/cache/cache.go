// Package cache locates microbox's build artifacts (guest kernel, agent
// initramfs, language images) and names them by a hash of their recipe, so a
// second build is instant and a changed recipe builds anew.
package cache

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
)

// EnvDir is the environment variable that overrides the cache folder.
const EnvDir = "MICROBOX_CACHE"

// Dir returns $MICROBOX_CACHE, or ~/.cache/microbox when it is unset.
func Dir() (string, error) {
	if d := os.Getenv(EnvDir); d != "" {
		return filepath.Abs(d)
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("cache folder: set %s or HOME: %w", EnvDir, err)
	}
	return filepath.Join(home, ".cache", "microbox"), nil
}

// Key hashes the parts of a recipe into a short, stable name. Each part is
// length-prefixed so that ("ab","c") and ("a","bc") differ.
func Key(parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		fmt.Fprintf(h, "%d:", len(p))
		h.Write([]byte(p))
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}
