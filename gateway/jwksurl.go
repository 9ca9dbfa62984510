package gateway

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Defaults of a JWKS fetched from a URL (JWTConfig.JWKSURL).
const (
	DefaultJWKSRefresh = 10 * time.Minute
	// jwksMinInterval spaces the fetches a token with an unknown key id
	// causes: a flood of tokens with made-up key ids costs one fetch per
	// interval, not one per token.
	jwksMinInterval = 30 * time.Second
	maxJWKSBytes    = 1 << 20
)

// jwksSource is a JWKS kept fresh from a URL: fetched when the
// authenticator is made (which fails if it cannot be), again in the
// background once it is older than refresh (on the first token after
// that), and at once for a token whose key id it does not know (at most
// every jwksMinInterval), so that keys an identity provider rotates in
// are accepted without a restart. A failed fetch keeps the keys it has,
// and says so in the log.
type jwksSource struct {
	url     string
	client  *http.Client
	refresh time.Duration
	now     func() time.Time
	log     *slog.Logger

	cur      atomic.Pointer[JWKS]
	fetching sync.Mutex   // one fetch at a time
	last     atomic.Int64 // UnixNano of the last fetch attempt
	inflight atomic.Bool  // a background refresh is running
	fetches  atomic.Uint64
}

func newJWKSSource(ctx context.Context, url string, client *http.Client, refresh time.Duration, now func() time.Time, log *slog.Logger) (*jwksSource, error) {
	if client == nil {
		client = &http.Client{Timeout: 10 * time.Second}
	}
	if refresh <= 0 {
		refresh = DefaultJWKSRefresh
	}
	if now == nil {
		now = time.Now
	}
	if log == nil {
		log = slog.Default()
	}
	s := &jwksSource{url: url, client: client, refresh: refresh, now: now, log: log}
	if err := s.fetch(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// fetch reads the JWKS and installs it; on failure the keys stay as they
// were.
func (s *jwksSource) fetch(ctx context.Context) error {
	s.fetching.Lock()
	defer s.fetching.Unlock()
	s.last.Store(s.now().UnixNano())
	s.fetches.Add(1)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.url, nil)
	if err != nil {
		return fmt.Errorf("gateway: JWKS URL: %w", err)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return fmt.Errorf("gateway: fetching the JWKS: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("gateway: fetching the JWKS from %s: %s", s.url, resp.Status)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxJWKSBytes+1))
	if err != nil {
		return fmt.Errorf("gateway: fetching the JWKS: %w", err)
	}
	if len(data) > maxJWKSBytes {
		return fmt.Errorf("gateway: the JWKS at %s is over %d bytes", s.url, maxJWKSBytes)
	}
	set, err := ParseJWKS(data)
	if err != nil {
		return fmt.Errorf("%w (from %s)", err, s.url)
	}
	if len(set.keys) == 0 {
		return fmt.Errorf("gateway: the JWKS at %s has no signing keys", s.url)
	}
	s.cur.Store(set)
	return nil
}

// since returns how long ago the last fetch was tried.
func (s *jwksSource) since() time.Duration {
	return s.now().Sub(time.Unix(0, s.last.Load()))
}

// keyFunc selects a token's key from the current set, refreshing it as
// the type's comment says.
func (s *jwksSource) keyFunc(t *jwt.Token) (any, error) {
	if s.since() >= s.refresh && s.inflight.CompareAndSwap(false, true) {
		go func() {
			defer s.inflight.Store(false)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := s.fetch(ctx); err != nil {
				s.log.Warn("refreshing the JWKS failed; keeping the keys fetched before", "url", s.url, "err", err)
			}
		}()
	}
	key, err := s.cur.Load().keyFunc(t)
	if err == nil || !errors.Is(err, errUnknownKid) || s.since() < jwksMinInterval {
		return key, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if ferr := s.fetch(ctx); ferr != nil {
		s.log.Warn("fetching the JWKS for an unknown key id failed", "url", s.url, "err", ferr)
		return nil, err
	}
	return s.cur.Load().keyFunc(t)
}
