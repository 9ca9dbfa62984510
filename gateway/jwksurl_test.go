package gateway_test

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/streamerd/streamer/gateway"
)

// TestJWKSFromURL: keys fetched from a URL are refreshed when a token names
// a key id they lack (at most every 30 s) and every JWKSRefresh; a failed
// fetch keeps the keys there were; a URL that cannot be read at start is an
// error then.
func TestJWKSFromURL(t *testing.T) {
	keyA, _ := rsa.GenerateKey(rand.Reader, 2048)
	keyB, _ := rsa.GenerateKey(rand.Reader, 2048)
	b64 := base64.RawURLEncoding.EncodeToString
	jwk := func(kid string, k *rsa.PrivateKey) map[string]any {
		return map[string]any{"kty": "RSA", "kid": kid, "n": b64(k.N.Bytes()), "e": b64(big.NewInt(int64(k.E)).Bytes())}
	}
	var (
		doc     atomic.Pointer[[]byte]
		failing atomic.Bool
		fetches atomic.Int64
	)
	serve := func(keys ...map[string]any) {
		b, _ := json.Marshal(map[string]any{"keys": keys})
		doc.Store(&b)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fetches.Add(1)
		if failing.Load() {
			http.Error(w, "down", http.StatusInternalServerError)
			return
		}
		_, _ = w.Write(*doc.Load())
	}))
	defer srv.Close()

	var mu sync.Mutex
	now := time.Now()
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }

	serve(jwk("a", keyA))
	auth, err := gateway.NewJWTAuth(gateway.JWTConfig{JWKSURL: srv.URL, JWKSRefresh: 10 * time.Minute, Now: clock, Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	token := func(kid string, key *rsa.PrivateKey) string {
		tok := jwt.NewWithClaims(jwt.SigningMethodRS256, jwt.MapClaims{"tenant": "acme", "exp": clock().Add(time.Hour).Unix()})
		tok.Header["kid"] = kid
		s, err := tok.SignedString(key)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	check := func(what, tok string, ok bool) {
		t.Helper()
		r := httptest.NewRequest("GET", "/v1/ws", nil)
		r.Header.Set("Authorization", "Bearer "+tok)
		_, err := auth.Authenticate(r)
		if (err == nil) != ok {
			t.Fatalf("%s: err = %v, want ok %v", what, err, ok)
		}
	}
	check("key a", token("a", keyA), true)
	if fetches.Load() != 1 {
		t.Fatalf("%d fetches at start, want 1", fetches.Load())
	}

	serve(jwk("a", keyA), jwk("b", keyB)) // the provider rotates b in
	check("key b within 30 s of the last fetch", token("b", keyB), false)
	if fetches.Load() != 1 {
		t.Fatal("an unknown key id fetched again within 30 s")
	}
	advance(31 * time.Second)
	check("key b, fetched for its unknown key id", token("b", keyB), true)
	check("a made-up key id right after", token("zzz", keyB), false)
	if fetches.Load() != 2 {
		t.Fatalf("%d fetches, want 2", fetches.Load())
	}

	serve(jwk("b", keyB)) // a is retired
	advance(10 * time.Minute)
	// The first token after the refresh interval starts a refresh in the
	// background (b is in both sets: the outcome does not depend on which
	// set this token meets).
	check("key b, on the refresh's first token", token("b", keyB), true)
	waitFor(t, "the background refresh", func() bool { return fetches.Load() == 3 })
	waitFor(t, "key a to be gone", func() bool {
		r := httptest.NewRequest("GET", "/v1/ws", nil)
		r.Header.Set("Authorization", "Bearer "+token("a", keyA))
		_, err := auth.Authenticate(r)
		return err != nil
	})

	failing.Store(true)
	advance(10 * time.Minute)
	check("key b while the provider fails", token("b", keyB), true)
	waitFor(t, "the failed refresh", func() bool { return fetches.Load() == 4 })
	check("key b after the failed refresh", token("b", keyB), true)

	if _, err := gateway.NewJWTAuth(gateway.JWTConfig{JWKSURL: srv.URL}); err == nil || !strings.Contains(err.Error(), "500") {
		t.Fatalf("a JWKS URL failing at start: %v", err)
	}
	if _, err := gateway.NewJWTAuth(gateway.JWTConfig{JWKSURL: srv.URL, Secret: []byte("x")}); err == nil {
		t.Fatal("JWKSURL and Secret both accepted")
	}
}
