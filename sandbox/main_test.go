package sandbox

import (
	"testing"

	"microbox/internal/vmtest"
)

func TestMain(m *testing.M) { vmtest.Main(m) }
