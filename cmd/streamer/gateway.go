package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
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
--jwt-secret, or with a key of --jwt-jwks-file or --jwt-jwks-url; the token
must carry "exp" and a tenant claim ("tenant", or --jwt-tenant-claim), which
decides whose events the user sees. --insecure-no-auth accepts everyone as
tenant --insecure-tenant: development only.

Syntrix apps and their SDK connect unchanged to /realtime/ws (the token in
the first message, {"type":"auth"}), /realtime/sse?collection=C and
/realtime/v1/databases/{db}/sse: Syntrix's messages over the same
subscriptions and limits (docs/SYNTRIX.md). Syntrix's tokens name the tenant
in "tid": --jwt-tenant-claim tid.

Every flag can also be set through an environment variable: --jwt-secret is
STREAMER_JWT_SECRET (prefer it to the command line for secrets),
--auth-token is STREAMER_AUTH_TOKEN, and so on; flags win. SIGINT or SIGTERM
closes every connection ("gateway shutting down") and exits.`

// gatewayOptions are gateway's flags.
type gatewayOptions struct {
	addr, listen, httpAddr                      string
	defaultTenant                               *string // nil: tokens must name their tenant
	metricsToken                                string
	profiling                                   bool
	authTokenFlag, metricsTokenFlag             func() (string, error)
	dialTimeout                                 time.Duration
	jwtSecret, jwksFile, jwtIssuer, jwtAudience string
	jwksURL                                     string
	jwksRefresh                                 time.Duration
	jwtLeeway                                   time.Duration
	tenantClaim                                 string
	syntrixHeartbeat                            time.Duration
	noAuth                                      bool
	noAuthTenant, authToken, gatewayID          string
	tls                                         *clientTLS
	sendQueue, maxSubs, resumeBytes, celMax     int
	sendQueueBytes                              int
	celWorst                                    uint64
	resumeWindow, writeTimeout, keepAlive       time.Duration
	compression                                 bool
	origins, logLevel, logFormat                string
	gcHeadroom                                  *int
}

// gatewayFlags defines gateway's flags on fs.
func gatewayFlags(fs *flag.FlagSet) *gatewayOptions {
	o := &gatewayOptions{}
	fs.StringVar(&o.addr, "addr", "localhost:7070", "`HOST:PORT` of a streamer node's gRPC listener (or a load balancer)")
	fs.DurationVar(&o.dialTimeout, "dial-timeout", 30*time.Second, "how long to try reaching a node at start before exiting with the reason (later outages are retried forever, with /readyz 503)")
	fs.StringVar(&o.listen, "listen", ":8080", "`address` of the public HTTP listener (/v1/ws, /v1/sse, /realtime/…, demo page at /)")
	fs.StringVar(&o.httpAddr, "http", ":8081", "`address` of the admin HTTP listener (/metrics, /healthz, /readyz)")
	fs.StringVar(&o.jwtSecret, "jwt-secret", "", "HS256 `key` of users' JWTs")
	fs.StringVar(&o.jwksFile, "jwt-jwks-file", "", "JWKS `file` with the keys of users' JWTs (RSA, EC, Ed25519 or oct)")
	fs.StringVar(&o.jwksURL, "jwt-jwks-url", "", "`URL` of the identity provider's JWKS: fetched at start, refreshed every --jwt-jwks-refresh and when a token names an unknown key id (at most every 30s)")
	fs.DurationVar(&o.jwksRefresh, "jwt-jwks-refresh", gateway.DefaultJWKSRefresh, "how often the --jwt-jwks-url keys are fetched again")
	fs.StringVar(&o.jwtIssuer, "jwt-issuer", "", "required \"iss\" claim of users' JWTs (empty: not checked)")
	fs.StringVar(&o.jwtAudience, "jwt-audience", "", "required \"aud\" value of users' JWTs (empty: not checked)")
	fs.Func("default-tenant", "`tenant` of JWTs without a \"tenant\" claim or with an empty one (unset: such tokens are refused; \"\" is the empty tenant)", func(v string) error {
		o.defaultTenant = &v
		return nil
	})
	fs.DurationVar(&o.jwtLeeway, "jwt-leeway", 30*time.Second, "clock skew tolerated in exp/nbf/iat checks")
	fs.StringVar(&o.tenantClaim, "jwt-tenant-claim", gateway.DefaultTenantClaim, "JWT `claim` naming the user's tenant (Syntrix's tokens: tid)")
	fs.DurationVar(&o.syntrixHeartbeat, "syntrix-heartbeat", gateway.DefaultSyntrixHeartbeat, "interval of heartbeat messages (WebSocket) and comments (SSE) on Syntrix's /realtime endpoints")
	fs.BoolVar(&o.noAuth, "insecure-no-auth", false, "accept every user without a token, as --insecure-tenant (development only)")
	fs.StringVar(&o.noAuthTenant, "insecure-tenant", "", "`tenant` of every user with --insecure-no-auth")
	o.authTokenFlag = secretFlag(fs, "auth-token", "bearer `token` the streamer node requires")
	o.metricsTokenFlag = secretFlag(fs, "metrics-token", "bearer `token` /metrics requires (empty: open to whoever reaches --http)")
	fs.BoolVar(&o.profiling, "pprof", false, "serve Go's runtime profiles at /debug/pprof/ on --http, behind --metrics-token")
	o.tls = clientTLSFlags(fs)
	fs.StringVar(&o.gatewayID, "gateway-id", "", "gateway `id` to register with (default: a random one per start)")
	fs.IntVar(&o.sendQueueBytes, "send-queue-bytes", gateway.DefaultSendQueueBytes, "`bytes` of messages queued unread per connection; a client further behind is disconnected as slow")
	fs.IntVar(&o.sendQueue, "send-queue", gateway.DefaultSendQueue, "messages queued unread per connection; a client further behind is disconnected as slow")
	fs.IntVar(&o.maxSubs, "max-subscriptions", gateway.DefaultMaxSubscriptions, "subscriptions per WebSocket connection")
	fs.IntVar(&o.resumeBytes, "resume-buffer-bytes", gateway.DefaultResumeBufferBytes, "memory for recent events replayed on resume (SSE Last-Event-ID, WebSocket \"after\"), in `bytes`")
	fs.DurationVar(&o.resumeWindow, "sse-resume-window", gateway.DefaultSSEResumeWindow, "how long the subscriptions of an ended SSE stream or a lost WebSocket are kept for a resuming reconnect (negative: not kept)")
	fs.DurationVar(&o.writeTimeout, "write-timeout", gateway.DefaultWriteTimeout, "limit of each write to a client")
	fs.DurationVar(&o.keepAlive, "keepalive", gateway.DefaultKeepAlive, "interval of WebSocket pings and SSE keep-alive comments")
	fs.BoolVar(&o.compression, "ws-compression", false, "offer WebSocket clients permessage-deflate (each message compressed on its own; costs CPU, saves bandwidth on slow links)")
	fs.StringVar(&o.origins, "allowed-origins", "", "comma-separated origin host `patterns` allowed to open WebSockets besides the gateway's own host")
	fs.IntVar(&o.celMax, "cel-max-bytes", match.DefaultMaxCELBytes, "longest CEL expression accepted, in `bytes`")
	fs.Uint64Var(&o.celWorst, "cel-worst-case-limit", match.DefaultCELWorstCaseLimit, "refuse a CEL expression whose estimated cost on a 1 MiB document exceeds this (the node checks again with its own limits)")
	fs.StringVar(&o.logLevel, "log-level", "info", "log `level`: debug, info, warn or error")
	o.gcHeadroom = gcHeadroomFlag(fs)
	fs.StringVar(&o.logFormat, "log-format", "text", "log `format`: text or json")
	return o
}

// validate checks the flags that parsing alone does not.
func (o *gatewayOptions) validate() error {
	var err error
	if o.authToken, err = o.authTokenFlag(); err != nil {
		return err
	}
	if o.metricsToken, err = o.metricsTokenFlag(); err != nil {
		return err
	}
	modes := 0
	for _, set := range []bool{o.jwtSecret != "", o.jwksFile != "", o.jwksURL != "", o.noAuth} {
		if set {
			modes++
		}
	}
	if modes != 1 {
		return errors.New("give exactly one of --jwt-secret, --jwt-jwks-file, --jwt-jwks-url and --insecure-no-auth")
	}
	if o.sendQueue <= 0 || o.sendQueueBytes <= 0 || o.maxSubs <= 0 || o.resumeBytes <= 0 || o.writeTimeout <= 0 || o.keepAlive <= 0 || o.dialTimeout <= 0 || o.syntrixHeartbeat <= 0 {
		return errors.New("--send-queue, --send-queue-bytes, --max-subscriptions, --resume-buffer-bytes, --write-timeout, --keepalive, --dial-timeout and --syntrix-heartbeat must be positive")
	}
	if strings.TrimSpace(o.tenantClaim) == "" {
		return errors.New("--jwt-tenant-claim must name a claim")
	}
	return nil
}

func runGateway(ctx context.Context, args []string, sio stdio) error {
	fs := newFlagSet("gateway", gatewaySynopsis, sio)
	o := gatewayFlags(fs)
	if err := parseFlagsEnv(fs, args); err != nil {
		return err
	}
	if err := o.validate(); err != nil {
		return usageError(sio, err)
	}
	logger, err := newLogger(sio, o.logLevel, o.logFormat)
	if err != nil {
		return usageError(sio, err)
	}
	gcp, _, err := startGCPolicy(*o.gcHeadroom, logger)
	if err != nil {
		return usageError(sio, err)
	}
	defer gcp.Stop()

	auth, authMode, err := o.auth(logger)
	if err != nil {
		return err
	}
	if o.noAuth {
		logger.Warn("AUTHENTICATION DISABLED (--insecure-no-auth): anyone who can reach the listener reads every event of the tenant; development only",
			"tenant", o.noAuthTenant, "listen", o.listen)
	}
	logger.Info("connecting to the streamer node", "addr", o.addr, "dial_timeout", o.dialTimeout)
	dctx, cancel := context.WithTimeout(ctx, o.dialTimeout)
	copts, err := o.clientOptions(logger)
	if err != nil {
		cancel()
		return usageError(sio, err)
	}
	conn, err := client.Dial(dctx, o.addr, copts...)
	cancel()
	if err != nil {
		if ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("no streamer node answered at %s within --dial-timeout %v: %w", o.addr, o.dialTimeout, err)
		}
		return err
	}
	defer conn.Close()
	gw, err := gateway.New(o.gatewayConfig(conn, auth, logger))
	if err != nil {
		return err
	}
	return o.run(ctx, gw, conn.GatewayID(), authMode, logger)
}

// clientOptions are the options of the gateway's session with the nodes.
func (o *gatewayOptions) clientOptions(logger *slog.Logger) ([]client.Option, error) {
	transport, err := o.tls.option()
	if err != nil {
		return nil, err
	}
	opts := []client.Option{transport, client.WithLogger(logger)}
	if o.authToken != "" {
		opts = append(opts, client.WithToken(o.authToken))
	}
	if o.gatewayID != "" {
		opts = append(opts, client.WithGatewayID(o.gatewayID))
	}
	return opts, nil
}

// gatewayConfig is the gateway's configuration from the flags.
func (o *gatewayOptions) gatewayConfig(up gateway.Upstream, auth gateway.Authenticator, logger *slog.Logger) gateway.Config {
	return gateway.Config{
		Upstream:          up,
		MetricsToken:      o.metricsToken,
		Profiling:         o.profiling,
		Auth:              auth,
		Logger:            logger,
		SendQueue:         o.sendQueue,
		SendQueueBytes:    o.sendQueueBytes,
		MaxSubscriptions:  o.maxSubs,
		ResumeBufferBytes: o.resumeBytes,
		SSEResumeWindow:   o.resumeWindow,
		Compression:       o.compression,
		WriteTimeout:      o.writeTimeout,
		KeepAlive:         o.keepAlive,
		SyntrixHeartbeat:  o.syntrixHeartbeat,
		OriginPatterns:    splitList(o.origins),
		Match:             match.Config{MaxCELBytes: o.celMax, CELWorstCaseLimit: o.celWorst},
	}
}

// run serves gw on the public and admin listeners until ctx is done or a
// server fails, then closes every connection and stops the servers.
func (o *gatewayOptions) run(ctx context.Context, gw *gateway.Gateway, gatewayID, authMode string, logger *slog.Logger) error {
	pl, err := net.Listen("tcp", o.listen)
	if err != nil {
		return fmt.Errorf("listener: %w", err)
	}
	al, err := net.Listen("tcp", o.httpAddr)
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
		"node_addr", o.addr, "gateway_id", gatewayID, "auth", authMode)

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
func (o *gatewayOptions) auth(logger *slog.Logger) (gateway.Authenticator, string, error) {
	if o.noAuth {
		return gateway.NoAuth(o.noAuthTenant), "none (insecure)", nil
	}
	cfg := gateway.JWTConfig{Issuer: o.jwtIssuer, Audience: o.jwtAudience, Leeway: o.jwtLeeway, DefaultTenant: o.defaultTenant, TenantClaim: o.tenantClaim}
	mode := "jwt-hs256"
	switch {
	case o.jwtSecret != "":
		cfg.Secret = []byte(o.jwtSecret)
	case o.jwksURL != "":
		cfg.JWKSURL, cfg.JWKSRefresh, cfg.Logger = o.jwksURL, o.jwksRefresh, logger
		mode = "jwt-jwks-url"
	default:
		data, err := os.ReadFile(o.jwksFile)
		if err != nil {
			return nil, "", fmt.Errorf("--jwt-jwks-file: %w", err)
		}
		if cfg.JWKS, err = gateway.ParseJWKS(data); err != nil {
			return nil, "", fmt.Errorf("--jwt-jwks-file %s: %w", o.jwksFile, err)
		}
		mode = "jwt-jwks"
	}
	auth, err := gateway.NewJWTAuth(cfg)
	if err != nil {
		return nil, "", err
	}
	return auth, mode, nil
}
