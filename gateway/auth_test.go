package gateway_test

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/streamerd/streamer/gateway"
)

func TestJWTAuth(t *testing.T) {
	now := time.Now()
	auth, err := gateway.NewJWTAuth(gateway.JWTConfig{Secret: testSecret, Issuer: "issuer", Audience: "streamer"})
	if err != nil {
		t.Fatal(err)
	}
	valid := func() jwt.MapClaims {
		return jwt.MapClaims{"tenant": "acme", "sub": "u1", "iss": "issuer", "aud": "streamer", "exp": now.Add(time.Hour).Unix()}
	}
	with := func(k string, v any) jwt.MapClaims {
		c := valid()
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
		return c
	}
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	rs256, err := jwt.NewWithClaims(jwt.SigningMethodRS256, valid()).SignedString(rsaKey)
	if err != nil {
		t.Fatal(err)
	}
	none, err := jwt.NewWithClaims(jwt.SigningMethodNone, valid()).SignedString(jwt.UnsafeAllowNoneSignatureType)
	if err != nil {
		t.Fatal(err)
	}
	good := signHS256(t, testSecret, valid())

	for _, tc := range []struct {
		name    string
		header  string // Authorization
		query   string // access_token
		tenant  string // want, when ok
		wantErr string // substring of the error; "" = accepted
	}{
		{name: "valid header", header: "Bearer " + good, tenant: "acme"},
		{name: "valid query parameter", query: good, tenant: "acme"},
		{name: "scheme is case-insensitive", header: "bearer " + good, tenant: "acme"},
		{name: "empty tenant claim", header: "Bearer " + signHS256(t, testSecret, with("tenant", "")), wantErr: `no "tenant" claim, or an empty one, and the gateway has no default tenant (--default-tenant)`},
		{name: "missing", wantErr: "missing token"},
		{name: "not bearer", header: "Basic dXNlcjpwYXNz", wantErr: "malformed Authorization"},
		{name: "empty bearer", header: "Bearer ", wantErr: "malformed Authorization"},
		{name: "header and query", header: "Bearer " + good, query: good, wantErr: "not both"},
		{name: "garbage", header: "Bearer not.a.jwt", wantErr: "malformed"},
		{name: "expired", header: "Bearer " + signHS256(t, testSecret, with("exp", now.Add(-time.Hour).Unix())), wantErr: "expired"},
		{name: "no exp", header: "Bearer " + signHS256(t, testSecret, with("exp", nil)), wantErr: "exp"},
		{name: "not yet valid", header: "Bearer " + signHS256(t, testSecret, with("nbf", now.Add(time.Hour).Unix())), wantErr: "not valid yet"},
		{name: "issued in the future", header: "Bearer " + signHS256(t, testSecret, with("iat", now.Add(time.Hour).Unix())), wantErr: "before issued"},
		{name: "wrong signature", header: "Bearer " + signHS256(t, []byte("another-secret-0123456789abcdefgh"), valid()), wantErr: "signature is invalid"},
		{name: "tampered payload", header: "Bearer " + tamper(t, good, "tenant", "other"), wantErr: "signature is invalid"},
		{name: "alg none", header: "Bearer " + none, wantErr: "signing method none is invalid"},
		{name: "RS256 where HS256 is configured", header: "Bearer " + rs256, wantErr: "signing method RS256 is invalid"},
		{name: "no tenant claim", header: "Bearer " + signHS256(t, testSecret, with("tenant", nil)), wantErr: `no "tenant" claim`},
		{name: "tenant not a string", header: "Bearer " + signHS256(t, testSecret, with("tenant", 42)), wantErr: "invalid token"},
		{name: "wrong issuer", header: "Bearer " + signHS256(t, testSecret, with("iss", "evil")), wantErr: "issuer"},
		{name: "wrong audience", header: "Bearer " + signHS256(t, testSecret, with("aud", "other")), wantErr: "audience"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			target := "/v1/ws"
			if tc.query != "" {
				target += "?access_token=" + url.QueryEscape(tc.query)
			}
			r := httptest.NewRequest("GET", target, nil)
			if tc.header != "" {
				r.Header.Set("Authorization", tc.header)
			}
			id, err := auth.Authenticate(r)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.wantErr == "" && (id.Tenant != tc.tenant || id.Expires.IsZero()):
				t.Fatalf("identity %+v, want tenant %q with an expiry", id, tc.tenant)
			case tc.wantErr != "" && err == nil:
				t.Fatalf("accepted as %+v, want an error with %q", id, tc.wantErr)
			case tc.wantErr != "" && (!strings.Contains(err.Error(), tc.wantErr) || !errors.Is(err, gateway.ErrUnauthenticated)):
				t.Fatalf("error %q, want ErrUnauthenticated with %q", err, tc.wantErr)
			}
		})
	}
}

// TestJWTAuthDefaultTenant: with a default tenant, a token without a
// tenant claim, or with an empty one, is that tenant's; one naming its
// tenant keeps it.
func TestJWTAuthDefaultTenant(t *testing.T) {
	def := "solo"
	auth, err := gateway.NewJWTAuth(gateway.JWTConfig{Secret: testSecret, DefaultTenant: &def})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	claims := func(tenant any) jwt.MapClaims {
		c := jwt.MapClaims{"exp": now.Add(time.Hour).Unix(), "sub": "u"}
		if tenant != nil {
			c["tenant"] = tenant
		}
		return c
	}
	for _, tc := range []struct {
		name   string
		tenant any
		want   string
	}{{"no claim", nil, "solo"}, {"empty claim", "", "solo"}, {"own tenant", "acme", "acme"}} {
		r := httptest.NewRequest("GET", "/v1/ws", nil)
		r.Header.Set("Authorization", "Bearer "+signHS256(t, testSecret, claims(tc.tenant)))
		if id, err := auth.Authenticate(r); err != nil || id.Tenant != tc.want {
			t.Errorf("%s: %+v, %v; want tenant %q", tc.name, id, err, tc.want)
		}
	}
}

// tamper rewrites one claim of a signed token, keeping the signature.
func tamper(t *testing.T, tok, claim string, value any) string {
	parts := strings.Split(tok, ".")
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var c map[string]any
	if err := json.Unmarshal(payload, &c); err != nil {
		t.Fatal(err)
	}
	c[claim] = value
	b, _ := json.Marshal(c)
	parts[1] = base64.RawURLEncoding.EncodeToString(b)
	return strings.Join(parts, ".")
}

func TestJWKSAuth(t *testing.T) {
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	edPub, edPriv, _ := ed25519.GenerateKey(rand.Reader)
	octKey := []byte("a-symmetric-key-of-32-bytes-or-more!")
	otherRSA, _ := rsa.GenerateKey(rand.Reader, 2048)
	b64 := base64.RawURLEncoding.EncodeToString
	jwks := map[string]any{"keys": []map[string]any{
		{"kty": "RSA", "kid": "rsa-1", "use": "sig", "n": b64(rsaKey.N.Bytes()), "e": b64(big.NewInt(int64(rsaKey.E)).Bytes())},
		{"kty": "EC", "kid": "ec-1", "crv": "P-256", "x": b64(ecKey.X.FillBytes(make([]byte, 32))), "y": b64(ecKey.Y.FillBytes(make([]byte, 32)))},
		{"kty": "OKP", "kid": "ed-1", "crv": "Ed25519", "x": b64(edPub)},
		{"kty": "oct", "kid": "hs-1", "alg": "HS256", "k": b64(octKey)},
		{"kty": "RSA", "kid": "enc-1", "use": "enc", "n": b64(otherRSA.N.Bytes()), "e": "AQAB"},
	}}
	doc, _ := json.Marshal(jwks)
	set, err := gateway.ParseJWKS(doc)
	if err != nil {
		t.Fatal(err)
	}
	auth, err := gateway.NewJWTAuth(gateway.JWTConfig{JWKS: set})
	if err != nil {
		t.Fatal(err)
	}
	claims := jwt.MapClaims{"tenant": "acme", "exp": time.Now().Add(time.Hour).Unix()}
	sign := func(m jwt.SigningMethod, kid string, key any) string {
		tok := jwt.NewWithClaims(m, claims)
		if kid != "" {
			tok.Header["kid"] = kid
		}
		s, err := tok.SignedString(key)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	for _, tc := range []struct {
		name string
		tok  string
		ok   bool
	}{
		{"RS256 with kid", sign(jwt.SigningMethodRS256, "rsa-1", rsaKey), true},
		{"PS256 with kid", sign(jwt.SigningMethodPS256, "rsa-1", rsaKey), true},
		{"ES256 with kid", sign(jwt.SigningMethodES256, "ec-1", ecKey), true},
		{"EdDSA with kid", sign(jwt.SigningMethodEdDSA, "ed-1", edPriv), true},
		{"HS256 with kid", sign(jwt.SigningMethodHS256, "hs-1", octKey), true},
		{"ES256 without kid: the only EC key", sign(jwt.SigningMethodES256, "", ecKey), true},
		{"unknown kid", sign(jwt.SigningMethodRS256, "rsa-2", rsaKey), false},
		{"kid of another key type", sign(jwt.SigningMethodRS256, "ec-1", rsaKey), false},
		{"HS512 on an HS256-only key", sign(jwt.SigningMethodHS512, "hs-1", octKey), false},
		{"signed by an encryption key", sign(jwt.SigningMethodRS256, "enc-1", otherRSA), false},
		{"signed by an unknown key", sign(jwt.SigningMethodRS256, "rsa-1", otherRSA), false},
		{"HS256 signed with the RSA public key bytes", sign(jwt.SigningMethodHS256, "rsa-1", rsaKey.N.Bytes()), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/v1/sse", nil)
			r.Header.Set("Authorization", "Bearer "+tc.tok)
			id, err := auth.Authenticate(r)
			if tc.ok && (err != nil || id.Tenant != "acme") {
				t.Fatalf("got %+v, %v; want tenant acme", id, err)
			}
			if !tc.ok && err == nil {
				t.Fatalf("accepted %+v", id)
			}
		})
	}

	for _, bad := range []string{
		`{}`, `{"keys":[]}`, `not json`,
		`{"keys":[{"kty":"RSA","n":"AQAB","e":"AQAB"}]}`,                   // modulus too small
		`{"keys":[{"kty":"EC","crv":"P-256","x":"AQAB","y":"AQAB"}]}`,      // not on the curve
		`{"keys":[{"kty":"EC","crv":"secp256k1","x":"AQAB","y":"AQAB"}]}`,  // unsupported curve
		`{"keys":[{"kty":"oct","k":"c2hvcnQ"}]}`,                           // short secret
		`{"keys":[{"kty":"OKP","crv":"Ed25519","x":"AQAB"}]}`,              // wrong size
		`{"keys":[{"kty":"oct","alg":"RS256","k":"` + b64(octKey) + `"}]}`, // alg of another family
		`{"keys":[{"kid":"x"}]}`,
	} {
		if _, err := gateway.ParseJWKS([]byte(bad)); err == nil {
			t.Errorf("ParseJWKS(%s) accepted it", bad)
		}
	}
}

// TestAuthOnEndpoints checks that both endpoints answer 401 before
// upgrading, refuse a client-chosen tenant, and keep tenants apart.
func TestAuthOnEndpoints(t *testing.T) {
	e := newEnv(t, envOptions{})
	expired := signHS256(t, testSecret, jwt.MapClaims{"tenant": "acme", "exp": time.Now().Add(-time.Minute).Unix()})
	forged := signHS256(t, []byte("not-the-gateway-secret-0123456789"), jwt.MapClaims{"tenant": "acme", "exp": time.Now().Add(time.Hour).Unix()})
	sseQuery := url.Values{"collection": {"orders"}}

	for _, tc := range []struct {
		name, token, query string
		status             int
		code               string
	}{
		{"missing token", "", "", http.StatusUnauthorized, "unauthenticated"},
		{"expired token", expired, "", http.StatusUnauthorized, "unauthenticated"},
		{"wrong signature", forged, "", http.StatusUnauthorized, "unauthenticated"},
		{"expired token as access_token", "", "access_token=" + expired, http.StatusUnauthorized, "unauthenticated"},
		{"tenant parameter", token(t, "acme"), "tenant=globex", http.StatusBadRequest, "tenant_not_allowed"},
		{"tenant parameter equal to the token's", token(t, "acme"), "tenant=acme", http.StatusBadRequest, "tenant_not_allowed"},
	} {
		t.Run("websocket: "+tc.name, func(t *testing.T) {
			c, resp, err := e.tryDialWS(tc.token, tc.query, nil)
			if err == nil {
				_ = c.CloseNow()
				t.Fatal("upgraded")
			}
			checkHTTPError(t, resp, tc.status, tc.code)
		})
		t.Run("sse: "+tc.name, func(t *testing.T) {
			u := e.sseURL(sseQuery)
			if tc.query != "" {
				u += "&" + tc.query
			}
			resp, err := trySSE(u, tc.token, "")
			if err != nil {
				t.Fatal(err)
			}
			checkHTTPError(t, resp, tc.status, tc.code)
		})
	}
	if got := e.gw.Stats().AuthFailures; got != 8 {
		t.Errorf("auth failures = %d, want 8", got)
	}

	t.Run("a tenant in a subscribe message is refused", func(t *testing.T) {
		w := e.dialWS(t, token(t, "acme"))
		for _, m := range []string{
			`{"type":"subscribe","id":"s","collection":"orders","tenant":"globex"}`,
			`{"type":"subscribe","id":"s","collection":"orders","Tenant":"globex"}`,
			`{"type":"subscribe","id":"s","collection":"orders","tenant":null}`,
		} {
			w.send(m)
			if got := w.expect("error", ""); got.Code != "tenant_not_allowed" {
				t.Fatalf("%s: %+v", m, got)
			}
		}
		if st := e.gw.Stats(); st.ClientSubscriptions != 0 {
			t.Fatalf("a refused subscription is active: %+v", st)
		}
	})

	t.Run("tenants only see their own events", func(t *testing.T) {
		acme := e.dialWS(t, token(t, "acme"))
		globex := e.dialWS(t, token(t, "globex"))
		acme.subscribe("mine", "orders", nil)
		globex.subscribe("mine", "orders", nil)
		if st := e.gw.Stats(); st.UpstreamSubscriptions != 2 {
			t.Fatalf("two tenants' identical subscriptions must not share: %+v", st)
		}
		g := e.publish(event{Tenant: "globex", Collection: "orders", ID: "g1", Op: "create", Doc: json.RawMessage(`{}`)})[0]
		if m := globex.expect("event", "g1"); m.Tenant != "globex" || m.EventID != g.EventID {
			t.Fatalf("globex got %+v", m)
		}
		// globex's event was delivered before acme's was published: had
		// acme received it, it would come first.
		a := e.publish(event{Tenant: "acme", Collection: "orders", ID: "a1", Op: "create", Doc: json.RawMessage(`{}`)})[0]
		if m := acme.next(); m.Type != "event" || m.EventID != a.EventID || m.Tenant != "acme" {
			t.Fatalf("acme's first event is %+v, want its own %s", m, a.EventID)
		}
	})
}

func checkHTTPError(t *testing.T, resp *http.Response, status int, code string) {
	t.Helper()
	if resp == nil {
		t.Fatal("no HTTP response")
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var m msg
	if resp.StatusCode != status || json.Unmarshal(body, &m) != nil || m.Type != "error" || m.Code != code {
		t.Fatalf("got %s %s, want %d with an error message of code %q", resp.Status, body, status, code)
	}
	if status == http.StatusUnauthorized && resp.Header.Get("WWW-Authenticate") == "" {
		t.Fatal("401 without WWW-Authenticate")
	}
}
