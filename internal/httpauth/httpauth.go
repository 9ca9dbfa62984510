// Package httpauth guards admin HTTP endpoints (metrics, profiles) with a
// bearer token.
package httpauth

import (
	"crypto/subtle"
	"net/http"
	"net/http/pprof"
	"strings"
)

// RequireBearer returns h behind "Authorization: Bearer <token>"; other
// requests get 401. An empty token leaves h open.
func RequireBearer(token string, h http.Handler) http.Handler {
	if token == "" {
		return h
	}
	want := []byte(token)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		scheme, got, ok := strings.Cut(r.Header.Get("Authorization"), " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") || subtle.ConstantTimeCompare([]byte(strings.TrimSpace(got)), want) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="metrics"`)
			http.Error(w, "unauthorized: send the metrics token as \"Authorization: Bearer <token>\"", http.StatusUnauthorized)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// Profiling registers Go's runtime profiles (net/http/pprof) under
// /debug/pprof/ on mux, behind the token like the metrics.
func Profiling(mux *http.ServeMux, token string) {
	mux.Handle("GET /debug/pprof/", RequireBearer(token, http.HandlerFunc(pprof.Index)))
	mux.Handle("GET /debug/pprof/cmdline", RequireBearer(token, http.HandlerFunc(pprof.Cmdline)))
	mux.Handle("GET /debug/pprof/profile", RequireBearer(token, http.HandlerFunc(pprof.Profile)))
	mux.Handle("GET /debug/pprof/symbol", RequireBearer(token, http.HandlerFunc(pprof.Symbol)))
	mux.Handle("GET /debug/pprof/trace", RequireBearer(token, http.HandlerFunc(pprof.Trace)))
}
