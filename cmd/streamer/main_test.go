package main

import (
	"os"
	"testing"

	"github.com/streamerd/streamer/internal/testbin"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testbin.Cleanup()
	os.Exit(code)
}
