package gateway

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"strings"

	"github.com/golang-jwt/jwt/v5"
)

// JWKS is a set of JWT verification keys parsed from a JSON Web Key Set
// (RFC 7517) with ParseJWKS. It is immutable.
type JWKS struct {
	keys []jwkKey
}

type jwkKey struct {
	kid  string
	alg  string // "" = any algorithm of the key's family
	algs []string
	key  any // *rsa.PublicKey, *ecdsa.PublicKey, ed25519.PublicKey or []byte
}

// jwkJSON is one key of a JWKS document.
type jwkJSON struct {
	Kty string `json:"kty"`
	Kid string `json:"kid"`
	Use string `json:"use"`
	Alg string `json:"alg"`
	Crv string `json:"crv"`
	N   string `json:"n"`
	E   string `json:"e"`
	X   string `json:"x"`
	Y   string `json:"y"`
	K   string `json:"k"`
}

// ParseJWKS parses a JWKS document {"keys":[…]}. Supported keys: RSA
// (RS256/384/512, PS256/384/512), EC P-256/P-384/P-521 (ES256/384/512),
// OKP Ed25519 (EdDSA) and oct (HS256/384/512). A key's "alg", when present,
// restricts it to that algorithm; keys whose "use" is not "sig" are
// skipped. Private members are ignored (only public parts are used).
func ParseJWKS(data []byte) (*JWKS, error) {
	var doc struct {
		Keys []jwkJSON `json:"keys"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("gateway: JWKS: %w", err)
	}
	set := &JWKS{}
	for i, k := range doc.Keys {
		if k.Use != "" && k.Use != "sig" {
			continue
		}
		key, algs, err := k.parse()
		if err != nil {
			return nil, fmt.Errorf("gateway: JWKS key %d (kid %q): %w", i, k.Kid, err)
		}
		if k.Alg != "" {
			if !slices.Contains(algs, k.Alg) {
				return nil, fmt.Errorf("gateway: JWKS key %d (kid %q): alg %q does not fit a %s key", i, k.Kid, k.Alg, k.Kty)
			}
			algs = []string{k.Alg}
		}
		set.keys = append(set.keys, jwkKey{kid: k.Kid, alg: k.Alg, algs: algs, key: key})
	}
	if len(set.keys) == 0 {
		return nil, errors.New("gateway: JWKS has no signature keys")
	}
	return set, nil
}

func (k jwkJSON) parse() (any, []string, error) {
	switch k.Kty {
	case "RSA":
		n, err := b64Int("n", k.N)
		if err != nil {
			return nil, nil, err
		}
		e, err := b64Int("e", k.E)
		if err != nil {
			return nil, nil, err
		}
		if !e.IsInt64() || e.Int64() < 3 || e.Int64() > 1<<31-1 || n.BitLen() < 2048 {
			return nil, nil, errors.New("RSA key: want a modulus of at least 2048 bits and a small public exponent")
		}
		return &rsa.PublicKey{N: n, E: int(e.Int64())}, []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}, nil
	case "EC":
		var curve elliptic.Curve
		var alg string
		switch k.Crv {
		case "P-256":
			curve, alg = elliptic.P256(), "ES256"
		case "P-384":
			curve, alg = elliptic.P384(), "ES384"
		case "P-521":
			curve, alg = elliptic.P521(), "ES512"
		default:
			return nil, nil, fmt.Errorf("EC key: unsupported curve %q", k.Crv)
		}
		x, err := b64Int("x", k.X)
		if err != nil {
			return nil, nil, err
		}
		y, err := b64Int("y", k.Y)
		if err != nil {
			return nil, nil, err
		}
		pub, err := ecdsaPublicKey(curve, x, y)
		if err != nil {
			return nil, nil, err
		}
		return pub, []string{alg}, nil
	case "OKP":
		if k.Crv != "Ed25519" {
			return nil, nil, fmt.Errorf("OKP key: unsupported curve %q", k.Crv)
		}
		x, err := b64("x", k.X)
		if err != nil {
			return nil, nil, err
		}
		if len(x) != ed25519.PublicKeySize {
			return nil, nil, fmt.Errorf("Ed25519 key: x is %d bytes, want %d", len(x), ed25519.PublicKeySize)
		}
		return ed25519.PublicKey(x), []string{"EdDSA"}, nil
	case "oct":
		secret, err := b64("k", k.K)
		if err != nil {
			return nil, nil, err
		}
		if len(secret) < 32 {
			return nil, nil, errors.New("oct key: want at least 32 bytes")
		}
		return secret, []string{"HS256", "HS384", "HS512"}, nil
	case "":
		return nil, nil, errors.New("kty is required")
	}
	return nil, nil, fmt.Errorf("unsupported kty %q", k.Kty)
}

// ecdsaPublicKey checks that (x, y) is on curve, via the uncompressed
// encoding that crypto/ecdh validates.
func ecdsaPublicKey(curve elliptic.Curve, x, y *big.Int) (*ecdsa.PublicKey, error) {
	size := (curve.Params().BitSize + 7) / 8
	if x.Sign() < 0 || y.Sign() < 0 || len(x.Bytes()) > size || len(y.Bytes()) > size {
		return nil, errors.New("EC key: coordinates out of range")
	}
	raw := make([]byte, 1+2*size)
	raw[0] = 4
	x.FillBytes(raw[1 : 1+size])
	y.FillBytes(raw[1+size:])
	pub, err := ecdsa.ParseUncompressedPublicKey(curve, raw)
	if err != nil {
		return nil, fmt.Errorf("EC key: %w", err)
	}
	return pub, nil
}

func b64(name, s string) ([]byte, error) {
	b, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(s, "="))
	if err != nil || len(b) == 0 {
		return nil, fmt.Errorf("%s: want non-empty base64url", name)
	}
	return b, nil
}

func b64Int(name, s string) (*big.Int, error) {
	b, err := b64(name, s)
	if err != nil {
		return nil, err
	}
	return new(big.Int).SetBytes(b), nil
}

// algorithms returns every algorithm some key accepts.
func (s *JWKS) algorithms() []string {
	var out []string
	for _, k := range s.keys {
		for _, a := range k.algs {
			if !slices.Contains(out, a) {
				out = append(out, a)
			}
		}
	}
	return out
}

// errUnknownKid is a token's key id that no key of the set has.
var errUnknownKid = errors.New("no key with kid")

// keyFunc selects the keys for a token: those with the token's "kid" (all
// keys when it has none) that accept its algorithm.
func (s *JWKS) keyFunc(t *jwt.Token) (any, error) {
	alg := t.Method.Alg()
	kid, hasKid := t.Header["kid"].(string)
	var keys []jwt.VerificationKey
	for _, k := range s.keys {
		if hasKid && k.kid != kid {
			continue
		}
		if slices.Contains(k.algs, alg) {
			keys = append(keys, k.key)
		}
	}
	switch len(keys) {
	case 0:
		if hasKid && !slices.ContainsFunc(s.keys, func(k jwkKey) bool { return k.kid == kid }) {
			return nil, fmt.Errorf("%w %q", errUnknownKid, kid)
		}
		if hasKid {
			return nil, fmt.Errorf("no key with kid %q for algorithm %s", kid, alg)
		}
		return nil, fmt.Errorf("no key for algorithm %s", alg)
	case 1:
		return keys[0], nil
	}
	return jwt.VerificationKeySet{Keys: keys}, nil
}
