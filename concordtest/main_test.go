package concordtest_test

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/concordkv/concord/internal/leaktest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, leaktest.Options()...)
}
