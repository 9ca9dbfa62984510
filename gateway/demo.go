package gateway

import (
	_ "embed"
	"net/http"
)

// demoPage is the demo served at /: it subscribes over /v1/ws and shows
// live events. It uses no external resources.
//
//go:embed demo/index.html
var demoPage []byte

func serveDemo(w http.ResponseWriter, _ *http.Request) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Security-Policy", "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self' ws: wss:")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-cache")
	_, _ = w.Write(demoPage)
}
