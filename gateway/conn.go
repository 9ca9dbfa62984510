package gateway

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"strconv"
)

// authenticate runs the Authenticator, refuses a client-chosen tenant and
// counts failures. On refusal it has written the response.
func (g *Gateway) authenticate(w http.ResponseWriter, r *http.Request) (Identity, bool) {
	id, err := g.cfg.Auth.Authenticate(r)
	if err != nil {
		g.authFailures.Add(1)
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
		writeHTTPError(w, http.StatusUnauthorized, &protoError{code: CodeUnauthenticated, message: err.Error()})
		return Identity{}, false
	}
	if r.URL.Query().Has("tenant") {
		writeHTTPError(w, http.StatusBadRequest, errorf("", CodeTenantNotAllowed, "the tenant comes from the access token; remove the tenant parameter"))
		return Identity{}, false
	}
	return id, true
}

// subscribe compiles req (checking it and computing its canonical form)
// and attaches it for s. Identical (tenant, collection, criterion) triples
// share one upstream subscription whatever their spelling (filter order,
// CEL formatting).
func (g *Gateway) subscribe(ctx context.Context, s *session, req subscribeRequest, resume *string) *protoError {
	compiled, err := g.engine.Compile(req.criterion)
	if err != nil {
		return compileError(req.id, err)
	}
	key := strconv.Quote(s.tenant) + " " + strconv.Quote(req.collection) + " " + compiled.Key()
	return g.hub.subscribe(ctx, s, req, key, resume, g.cfg.MaxSubscriptions)
}

// opened logs a new connection.
func (g *Gateway) opened(s *session, r *http.Request) {
	s.remote = r.RemoteAddr
	g.log.Debug("connection opened", "transport", s.transport, "tenant", s.tenant, "subject", s.subject, "remote", s.remote)
}

// closed accounts for the end of a connection's transport and logs why:
// slow consumers at warn level (operators should see them), the rest at
// debug level.
func (g *Gateway) closed(s *session) {
	g.connections[transportIndex(s.transport)].Add(-1)
	reason, detail := s.ended()
	level := slog.LevelDebug
	if reason == endSlow {
		level = slog.LevelWarn
	}
	g.log.Log(context.Background(), level, "connection closed", "transport", s.transport, "tenant", s.tenant,
		"subject", s.subject, "remote", s.remote, "reason", detail)
}

// writeHTTPError answers a request that was not upgraded with a JSON error
// message of the protocol.
func writeHTTPError(w http.ResponseWriter, status int, e *protoError) {
	b, _ := json.Marshal(errorMessage{"error", e.id, e.code, e.message}) // strings always marshal
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

// httpStatus is the status of a refused subscription on a request that was
// not upgraded.
func httpStatus(e *protoError) int {
	if e.code == CodeUnavailable || e.code == CodeInternal {
		return http.StatusServiceUnavailable
	}
	return http.StatusBadRequest
}
