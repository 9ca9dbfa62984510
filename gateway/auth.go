package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Identity is what an Authenticator established about a connection.
type Identity struct {
	// Tenant whose events the connection may receive (the token's "tenant"
	// claim). Empty is the empty tenant, a valid one.
	Tenant string
	// Subject is the token's "sub" claim, for logs; may be empty.
	Subject string
	// Expires is when the identity stops being valid; the gateway closes
	// the connection then. Zero: never.
	Expires time.Time
}

// Authenticator decides who a request is. The gateway calls it before
// upgrading a connection; an error is answered 401 with its message.
// Implementations must be safe for concurrent use.
type Authenticator interface {
	Authenticate(r *http.Request) (Identity, error)
}

// TokenAuthenticator is an Authenticator that can also verify a token sent
// inside a message (the auth message of Syntrix's protocol, /realtime/ws).
// The package's Authenticators implement it.
type TokenAuthenticator interface {
	Authenticator
	AuthenticateToken(token string) (Identity, error)
}

// ErrUnauthenticated is wrapped by the errors of the package's
// Authenticators.
var ErrUnauthenticated = errors.New("gateway: unauthenticated")

// NoAuth returns an Authenticator that accepts every request as tenant.
// It is for development only: anyone who can reach the gateway reads that
// tenant's events.
func NoAuth(tenant string) Authenticator { return noAuth(tenant) }

type noAuth string

func (a noAuth) Authenticate(*http.Request) (Identity, error) {
	return Identity{Tenant: string(a)}, nil
}

// AuthenticateToken accepts every token as the tenant.
func (a noAuth) AuthenticateToken(string) (Identity, error) {
	return Identity{Tenant: string(a)}, nil
}

// JWTConfig configures NewJWTAuth. Exactly one of Secret, JWKS and JWKSURL
// is set.
type JWTConfig struct {
	// Secret is the HS256 key tokens are signed with.
	Secret []byte
	// JWKS holds the verification keys (RSA, EC, Ed25519 or symmetric),
	// selected by the token's "kid" header; see ParseJWKS.
	JWKS *JWKS
	// JWKSURL, instead of JWKS, is where to fetch the keys: NewJWTAuth
	// fetches them (and fails if it cannot), refreshes them every
	// JWKSRefresh (default DefaultJWKSRefresh) and when a token names a key
	// id they lack (at most every 30 s), keeping the last good set when a
	// fetch fails. HTTPClient, when set, is used for the fetches.
	JWKSURL     string
	JWKSRefresh time.Duration
	HTTPClient  *http.Client
	// Logger receives the failed refreshes (default slog.Default()).
	Logger *slog.Logger
	// Issuer, when set, must equal the "iss" claim.
	Issuer string
	// Audience, when set, must be one of the "aud" claim's values.
	Audience string
	// Leeway tolerates clock skew in exp, nbf and iat checks (0: none).
	Leeway time.Duration
	// Now returns the current time (default time.Now); for tests.
	Now func() time.Time
	// DefaultTenant, when set, is the tenant of tokens without a tenant
	// claim or with an empty one. Unset, such tokens are refused: a missing
	// claim must not silently mean the empty tenant.
	DefaultTenant *string
	// TenantClaim is the claim that names the tenant (default
	// DefaultTenantClaim; Syntrix's tokens carry it in "tid").
	TenantClaim string
}

// DefaultTenantClaim is the JWT claim that names the connection's tenant
// unless JWTConfig.TenantClaim says otherwise.
const DefaultTenantClaim = "tenant"

// NewJWTAuth returns an Authenticator for JWTs sent as
// "Authorization: Bearer <token>" or, for browsers' WebSocket and
// EventSource, as the access_token query parameter. A token is accepted
// when its signature verifies (HS256 with Secret, or a JWKS key and its
// algorithm), it has an "exp" claim that has not passed, its "nbf" and
// "iat" (when present) are not in the future, Issuer and Audience match
// when configured, and it has a non-empty string "tenant" claim (or
// DefaultTenant is set).
func NewJWTAuth(cfg JWTConfig) (Authenticator, error) {
	a := &jwtAuth{}
	opts := []jwt.ParserOption{jwt.WithExpirationRequired(), jwt.WithIssuedAt(), jwt.WithLeeway(cfg.Leeway)}
	sources := 0
	for _, set := range []bool{len(cfg.Secret) > 0, cfg.JWKS != nil, cfg.JWKSURL != ""} {
		if set {
			sources++
		}
	}
	switch {
	case sources > 1:
		return nil, errors.New("gateway: JWTConfig: set one of Secret, JWKS and JWKSURL")
	case cfg.JWKSURL != "":
		src, err := newJWKSSource(context.Background(), cfg.JWKSURL, cfg.HTTPClient, cfg.JWKSRefresh, cfg.Now, cfg.Logger)
		if err != nil {
			return nil, err
		}
		a.keyFunc = src.keyFunc
		a.jwks = src
		// Keys come and go: every algorithm a key may have is allowed, and
		// each key checks its own (keyFunc).
		opts = append(opts, jwt.WithValidMethods([]string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512",
			"ES256", "ES384", "ES512", "EdDSA", "HS256", "HS384", "HS512"}))
	case len(cfg.Secret) > 0:
		secret := append([]byte(nil), cfg.Secret...)
		a.keyFunc = func(*jwt.Token) (any, error) { return secret, nil }
		opts = append(opts, jwt.WithValidMethods([]string{"HS256"}))
	case cfg.JWKS != nil:
		if len(cfg.JWKS.keys) == 0 {
			return nil, errors.New("gateway: JWTConfig: the JWKS has no keys")
		}
		a.keyFunc = cfg.JWKS.keyFunc
		opts = append(opts, jwt.WithValidMethods(cfg.JWKS.algorithms()))
	default:
		return nil, errors.New("gateway: JWTConfig: set Secret, JWKS or JWKSURL")
	}
	if cfg.Issuer != "" {
		opts = append(opts, jwt.WithIssuer(cfg.Issuer))
	}
	if cfg.Audience != "" {
		opts = append(opts, jwt.WithAudience(cfg.Audience))
	}
	if cfg.Now != nil {
		opts = append(opts, jwt.WithTimeFunc(cfg.Now))
	}
	a.parser = jwt.NewParser(opts...)
	a.defaultTenant = cfg.DefaultTenant
	a.tenantClaim = cfg.TenantClaim
	if a.tenantClaim == "" {
		a.tenantClaim = DefaultTenantClaim
	}
	return a, nil
}

type jwtAuth struct {
	parser        *jwt.Parser
	keyFunc       jwt.Keyfunc
	defaultTenant *string
	tenantClaim   string
	jwks          *jwksSource // with JWTConfig.JWKSURL
}

func (a *jwtAuth) Authenticate(r *http.Request) (Identity, error) {
	raw, err := bearerToken(r)
	if err != nil {
		return Identity{}, err
	}
	return a.AuthenticateToken(raw)
}

// AuthenticateToken verifies a token as Authenticate verifies the one of a
// request.
func (a *jwtAuth) AuthenticateToken(raw string) (Identity, error) {
	c := jwt.MapClaims{}
	if _, err := a.parser.ParseWithClaims(raw, c, a.keyFunc); err != nil {
		return Identity{}, fmt.Errorf("%w: invalid token: %w", ErrUnauthenticated, err)
	}
	tenant, isString := c[a.tenantClaim].(string)
	if c[a.tenantClaim] != nil && !isString {
		return Identity{}, fmt.Errorf("%w: invalid token: its %q claim is not a string", ErrUnauthenticated, a.tenantClaim)
	}
	if tenant == "" {
		if a.defaultTenant == nil {
			return Identity{}, fmt.Errorf("%w: the token has no %q claim, or an empty one, and the gateway has no default tenant (--default-tenant)", ErrUnauthenticated, a.tenantClaim)
		}
		tenant = *a.defaultTenant
	}
	sub, _ := c.GetSubject()
	id := Identity{Tenant: tenant, Subject: sub}
	if exp, _ := c.GetExpirationTime(); exp != nil {
		id.Expires = exp.Time
	}
	return id, nil
}

// bearerToken returns the token of "Authorization: Bearer <token>" or of
// the access_token query parameter. Both present is refused (ambiguous).
func bearerToken(r *http.Request) (string, error) {
	query, inQuery := r.URL.Query()["access_token"]
	header := r.Header.Get("Authorization")
	switch {
	case header != "" && inQuery:
		return "", fmt.Errorf("%w: send the token in the Authorization header or the access_token parameter, not both", ErrUnauthenticated)
	case header != "":
		scheme, token, ok := strings.Cut(header, " ")
		token = strings.TrimSpace(token)
		if !ok || !strings.EqualFold(scheme, "Bearer") || token == "" {
			return "", fmt.Errorf("%w: malformed Authorization header: want \"Bearer <token>\"", ErrUnauthenticated)
		}
		return token, nil
	case inQuery:
		if len(query) != 1 || query[0] == "" {
			return "", fmt.Errorf("%w: want exactly one non-empty access_token parameter", ErrUnauthenticated)
		}
		return query[0], nil
	}
	return "", fmt.Errorf("%w: missing token: send \"Authorization: Bearer <JWT>\" or the access_token parameter", ErrUnauthenticated)
}
