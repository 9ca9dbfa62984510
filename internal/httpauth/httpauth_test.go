package httpauth

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestRequireBearer(t *testing.T) {
	ok := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusTeapot) })
	for _, tc := range []struct {
		token, header string
		want          int
	}{
		{"", "", http.StatusTeapot},
		{"s3cret", "", http.StatusUnauthorized},
		{"s3cret", "Bearer wrong", http.StatusUnauthorized},
		{"s3cret", "Basic s3cret", http.StatusUnauthorized},
		{"s3cret", "Bearer s3cret", http.StatusTeapot},
		{"s3cret", "bearer  s3cret ", http.StatusTeapot},
	} {
		r := httptest.NewRequest("GET", "/metrics", nil)
		if tc.header != "" {
			r.Header.Set("Authorization", tc.header)
		}
		w := httptest.NewRecorder()
		RequireBearer(tc.token, ok).ServeHTTP(w, r)
		if w.Code != tc.want {
			t.Errorf("token %q, header %q: %d, want %d", tc.token, tc.header, w.Code, tc.want)
		}
	}
}

func TestProfilingIsBehindTheToken(t *testing.T) {
	mux := http.NewServeMux()
	Profiling(mux, "secret")
	for _, tc := range []struct {
		header string
		want   int
	}{{"", http.StatusUnauthorized}, {"Bearer secret", http.StatusOK}} {
		req := httptest.NewRequest("GET", "/debug/pprof/cmdline", nil)
		if tc.header != "" {
			req.Header.Set("Authorization", tc.header)
		}
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, req)
		if rec.Code != tc.want {
			t.Errorf("authorization %q: %d, want %d", tc.header, rec.Code, tc.want)
		}
	}
}
