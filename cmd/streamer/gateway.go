package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/streamerd/streamer/client"
	"github.com/streamerd/streamer/gateway"
	"github.com/streamerd/streamer/match"
)

const gatewaySynopsis = `gateway --addr HOST:PORT (--jwt-secret KEY | --jwt-jwks-file FILE | --insecure-no-auth) [flags]

Runs the reference gateway: end users connect over WebSocket (/v1/ws) or
Server-Sent Events (/v1/sse?collection=C&doc=ID|filters=JSON|cel=EXPR) on
--listen, and a demo page is served at /. The gateway holds one session with
the streamer node(s) at --addr; identical subscriptions of its users share
one streamer subscription. Admin HTTP on --http: /metrics, /healthz, /readyz.

Users authenticate with a JWT ("Authorization: Bearer <JWT>", or the
access_token query parameter for browsers) signed with HS256 and
--jwt-secret, or with a key of --jwt-jwks-file; the token must carry "exp"
and a "tenant" claim, which decides whose events the user sees.
--insecure-no-auth accepts everyone as tenant --insecure-tenant: development
only.

Every flag can also be set through an environment variable: --jwt-secret is
STREAMER_JWT_SECRET (prefer it to the command line for secrets),
--auth-token is STREAMER_AUTH_TOKEN, and so on; flags win. SIGINT or SIGTERM
closes every connection ("gateway shutting down") and exits.`

func runGateway(ctx context.Context, args []string, sio stdio) error {
	fs := newFlagSet("gateway", gatewaySynopsis, sio)
	addr := fs.String("addr", "localhost:7070", "`HOST:PORT` of a streamer node's gRPC listener (or a load balancer)")
	listen := fs.String("listen", ":8080", "`address` of the public HTTP listener (/v1/ws, /v1/sse, demo page at /)")
	httpAddr := fs.String("http", ":8081", "`address` of the admin HTTP listener (/metrics, /healthz, /readyz)")
	jwtSecret := fs.String("jwt-secret", "", "HS256 `key` of users' JWTs")
	jwksFile := fs.String("jwt-jwks-file", "", "JWKS `file` with the keys of users' JWTs (RSA, EC, Ed25519 or oct)")
	jwtIssuer := fs.String("jwt-issuer", "", "required \"iss\" claim of users' JWTs (empty: not checked)")
	jwtAudience := fs.String("jwt-audience", "", "required \"aud\" value of users' JWTs (empty: not checked)")
	jwtLeeway := fs.Duration("jwt-leeway", 30*time.Second, "clock skew tolerated in exp/nbf/iat checks")
	noAuth := fs.Bool("insecure-no-auth", false, "accept every user without a token, as --insecure-tenant (development only)")
	noAuthTenant := fs.String("insecure-tenant", "", "`tenant` of every user with --insecure-no-auth")
	authToken := fs.String("auth-token", "", "bearer `token` the streamer node requires")
	useTLS := fs.Bool("tls", false, "connect to the node with TLS (system roots) instead of plaintext")
	gatewayID := fs.String("gateway-id", "", "gateway `id` to register with (default: a random one per start)")
	sendQueue := fs.Int("send-queue", gateway.DefaultSendQueue, "messages queued per connection; a client that falls further behind is disconnected")
	maxSubs := fs.Int("max-subscriptions", gateway.DefaultMaxSubscriptions, "subscriptions per WebSocket connection")
	resumeBytes := fs.Int("resume-buffer-bytes", gateway.DefaultResumeBufferBytes, "memory for recent SSE events replayed on Last-Event-ID, in `bytes`")
	resumeWindow := fs.Duration("sse-resume-window", gateway.DefaultSSEResumeWindow, "how long an ended SSE stream's subscription is kept for a Last-Event-ID reconnect (negative: not kept)")
	writeTimeout := fs.Duration("write-timeout", gateway.DefaultWriteTimeout, "limit of each write to a client")
	keepAlive := fs.Duration("keepalive", gateway.DefaultKeepAlive, "interval of WebSocket pings and SSE keep-alive comments")
	origins := fs.String("allowed-origins", "", "comma-separated origin host `patterns` allowed to open WebSockets besides the gateway's own host")
	celMax := fs.Int("cel-max-bytes", match.DefaultMaxCELBytes, "longest CEL expression accepted, in `bytes`")
	logLevel := fs.String("log-level", "info", "log `level`: debug, info, warn or error")
	gcHeadroom := gcHeadroomFlag(fs)
	logFormat := fs.String("log-format", "text", "log `format`: text or json")
	if err := parseFlagsEnv(fs, args); err != nil {
		return err
	}
	usage := func(msg string) error {
		fmt.Fprintln(sio.err, msg)
		return errUsage
	}
	modes := 0
	for _, set := range []bool{*jwtSecret != "", *jwksFile != "", *noAuth} {
		if set {
			modes++
		}
	}
	if modes != 1 {
		return usage("give exactly one of --jwt-secret, --jwt-jwks-file and --insecure-no-auth")
	}
	if *sendQueue <= 0 || *maxSubs <= 0 || *resumeBytes <= 0 || *writeTimeout <= 0 || *keepAlive <= 0 {
		return usage("--send-queue, --max-subscriptions, --resume-buffer-bytes, --write-timeout and --keepalive must be positive")
	}
	logger, err := newLogger(sio, *logLevel, *logFormat)
	if err != nil {
		return usage(err.Error())
	}
	gcp, _, err := startGCPolicy(*gcHeadroom, logger)
	if err != nil {
		return usage(err.Error())
	}
	defer gcp.Stop()

	auth, authMode, err := gatewayAuth(*jwtSecret, *jwksFile, *jwtIssuer, *jwtAudience, *jwtLeeway, *noAuth, *noAuthTenant)
	if err != nil {
		return err
	}
	if *noAuth {
		logger.Warn("AUTHENTICATION DISABLED (--insecure-no-auth): anyone who can reach the listener reads every event of the tenant; development only",
			"tenant", *noAuthTenant, "listen", *listen)
	}

	opts := []client.Option{transportOption(*useTLS), client.WithLogger(logger)}
	if *authToken != "" {
		opts = append(opts, client.WithToken(*authToken))
	}
	if *gatewayID != "" {
		opts = append(opts, client.WithGatewayID(*gatewayID))
	}
	logger.Info("connecting to the streamer node", "addr", *addr)
	conn, err := client.Dial(ctx, *addr, opts...)
	if err != nil {
		return err
	}
	defer conn.Close()

	var originPatterns []string
	for p := range strings.SplitSeq(*origins, ",") {
		if p = strings.TrimSpace(p); p != "" {
			originPatterns = append(originPatterns, p)
		}
	}
	gw, err := gateway.New(gateway.Config{
		Upstream:          conn,
		Auth:              auth,
		Logger:            logger,
		SendQueue:         *sendQueue,
		MaxSubscriptions:  *maxSubs,
		ResumeBufferBytes: *resumeBytes,
		SSEResumeWindow:   *resumeWindow,
		WriteTimeout:      *writeTimeout,
		KeepAlive:         *keepAlive,
		OriginPatterns:    originPatterns,
		Match:             match.Config{MaxCELBytes: *celMax},
	})
	if err != nil {
		return err
	}

	pl, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("listener: %w", err)
	}
	al, err := net.Listen("tcp", *httpAddr)
	if err != nil {
		pl.Close()
		return fmt.Errorf("admin listener: %w", err)
	}
	public := &http.Server{Handler: gw.Handler(), ReadHeaderTimeout: 10 * time.Second}
	admin := &http.Server{Handler: gw.AdminHandler(), ReadHeaderTimeout: 10 * time.Second}

	// A server failing ends the gateway as a signal would, with its error.
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var wg sync.WaitGroup
	for _, s := range []struct {
		name string
		srv  *http.Server
		lis  net.Listener
	}{{"http server", public, pl}, {"admin http server", admin, al}} {
		wg.Go(func() {
			if err := s.srv.Serve(s.lis); !errors.Is(err, http.ErrServerClosed) {
				cancel(fmt.Errorf("%s: %w", s.name, err))
			}
		})
	}
	logger.Info("listening", "listen_addr", pl.Addr().String(), "http_addr", al.Addr().String(),
		"node_addr", *addr, "gateway_id", conn.GatewayID(), "auth", authMode)

	// Run closes every end-user connection (hijacked WebSockets included,
	// which http.Server.Shutdown does not track) before returning.
	runErr := gw.Run(ctx)
	shutCtx, shutCancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer shutCancel()
	for _, srv := range []*http.Server{public, admin} {
		if err := srv.Shutdown(shutCtx); err != nil {
			srv.Close()
		}
	}
	wg.Wait()
	logger.Info("stopped")
	if cause := context.Cause(ctx); cause != nil && !errors.Is(cause, context.Canceled) {
		return cause
	}
	return runErr
}

// gatewayAuth builds the users' authenticator and names its mode for logs.
func gatewayAuth(secret, jwksFile, issuer, audience string, leeway time.Duration, noAuth bool, tenant string) (gateway.Authenticator, string, error) {
	if noAuth {
		return gateway.NoAuth(tenant), "none (insecure)", nil
	}
	cfg := gateway.JWTConfig{Issuer: issuer, Audience: audience, Leeway: leeway}
	mode := "jwt-hs256"
	if secret != "" {
		cfg.Secret = []byte(secret)
	} else {
		data, err := os.ReadFile(jwksFile)
		if err != nil {
			return nil, "", fmt.Errorf("--jwt-jwks-file: %w", err)
		}
		if cfg.JWKS, err = gateway.ParseJWKS(data); err != nil {
			return nil, "", fmt.Errorf("--jwt-jwks-file %s: %w", jwksFile, err)
		}
		mode = "jwt-jwks"
	}
	auth, err := gateway.NewJWTAuth(cfg)
	if err != nil {
		return nil, "", err
	}
	return auth, mode, nil
}
