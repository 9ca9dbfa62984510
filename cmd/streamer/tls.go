package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"os"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/streamerd/streamer/client"
)

// TLS between gateways (and the CLI's publish and watch) and nodes: the node
// serves gRPC over TLS with --tls-cert and --tls-key, and requires client
// certificates signed by --tls-client-ca (mutual TLS); a client trusts the
// system roots with --tls, or --tls-ca, and presents --tls-cert and
// --tls-key when the node asks.

// serverTLS are serve's TLS flags.
type serverTLS struct{ cert, key, clientCA string }

func serverTLSFlags(fs *flag.FlagSet) *serverTLS {
	o := &serverTLS{}
	fs.StringVar(&o.cert, "tls-cert", "", "PEM `file` of the certificate (chain) the gRPC listener serves TLS with (with --tls-key)")
	fs.StringVar(&o.key, "tls-key", "", "PEM `file` of the private key of --tls-cert")
	fs.StringVar(&o.clientCA, "tls-client-ca", "", "PEM `file` of the CA(s) whose certificates gateways and producers must present (mutual TLS; needs --tls-cert)")
	return o
}

// option returns the gRPC server option of the flags (nil: plaintext) and a
// word for the logs.
func (o *serverTLS) option() (grpc.ServerOption, string, error) {
	switch {
	case o.cert == "" && o.key == "" && o.clientCA == "":
		return nil, "plaintext", nil
	case o.cert == "" || o.key == "":
		return nil, "", errors.New("--tls-cert and --tls-key go together (and --tls-client-ca needs them)")
	}
	cert, err := tls.LoadX509KeyPair(o.cert, o.key)
	if err != nil {
		return nil, "", fmt.Errorf("--tls-cert/--tls-key: %w", err)
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}
	mode := "tls"
	if o.clientCA != "" {
		pool, err := certPool(o.clientCA, "--tls-client-ca")
		if err != nil {
			return nil, "", err
		}
		cfg.ClientCAs, cfg.ClientAuth, mode = pool, tls.RequireAndVerifyClientCert, "mutual tls"
	}
	return grpc.Creds(credentials.NewTLS(cfg)), mode, nil
}

// clientTLS are the TLS flags of the commands that dial nodes.
type clientTLS struct {
	system              bool
	ca, cert, key, name string
}

func clientTLSFlags(fs *flag.FlagSet) *clientTLS {
	o := &clientTLS{}
	fs.BoolVar(&o.system, "tls", false, "connect to the node with TLS, trusting the system's roots (--tls-ca: a CA of your own)")
	fs.StringVar(&o.ca, "tls-ca", "", "PEM `file` of the CA(s) the node's certificate is checked against (implies TLS)")
	fs.StringVar(&o.cert, "tls-cert", "", "PEM `file` of the client certificate to present to a node that requires one (with --tls-key; implies TLS)")
	fs.StringVar(&o.key, "tls-key", "", "PEM `file` of the private key of --tls-cert")
	fs.StringVar(&o.name, "tls-server-name", "", "name the node's certificate must carry (default: the host of the address)")
	return o
}

// option returns the client option of the flags: plaintext unless one is set.
func (o *clientTLS) option() (client.Option, error) {
	if !o.system && o.ca == "" && o.cert == "" && o.key == "" && o.name == "" {
		return client.WithTransportCredentials(insecure.NewCredentials()), nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: o.name}
	if o.ca != "" {
		pool, err := certPool(o.ca, "--tls-ca")
		if err != nil {
			return nil, err
		}
		cfg.RootCAs = pool
	}
	switch {
	case o.cert != "" && o.key != "":
		cert, err := tls.LoadX509KeyPair(o.cert, o.key)
		if err != nil {
			return nil, fmt.Errorf("--tls-cert/--tls-key: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	case o.cert != "" || o.key != "":
		return nil, errors.New("--tls-cert and --tls-key go together")
	}
	return client.WithTransportCredentials(credentials.NewTLS(cfg)), nil
}

// certPool reads a PEM file of CA certificates.
func certPool(file, flagName string) (*x509.CertPool, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", flagName, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		return nil, fmt.Errorf("%s %s: no PEM certificate in it", flagName, file)
	}
	return pool, nil
}
