package mem_test

import (
	"testing"

	"github.com/custodyhq/custody/internal/backend"
	"github.com/custodyhq/custody/internal/backend/backendtest"
	"github.com/custodyhq/custody/internal/backend/mem"
)

func TestConformance(t *testing.T) {
	backendtest.Run(t, func(*testing.T) backend.Backend { return mem.New() })
}
