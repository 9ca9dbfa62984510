package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/streamerd/streamer/internal/testbin"
)

// testPKI is a CA with a server certificate for 127.0.0.1 and a client
// certificate, and a second CA that signed nothing of the node's, as PEM
// files in a temporary directory.
type testPKI struct {
	ca, otherCA, serverCert, serverKey, clientCert, clientKey string
}

func newTestPKI(t *testing.T) testPKI {
	t.Helper()
	dir := t.TempDir()
	write := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	serial := int64(0)
	issue := func(tmpl *x509.Certificate, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) (*x509.Certificate, *ecdsa.PrivateKey, []byte) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		serial++
		tmpl.SerialNumber = big.NewInt(serial)
		tmpl.NotBefore, tmpl.NotAfter = time.Now().Add(-time.Hour), time.Now().Add(time.Hour)
		if parent == nil {
			parent, parentKey = tmpl, key
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
		if err != nil {
			t.Fatal(err)
		}
		cert, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		return cert, key, der
	}
	keyDER := func(k *ecdsa.PrivateKey) []byte {
		der, err := x509.MarshalECPrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return der
	}
	caTmpl := func(cn string) *x509.Certificate {
		return &x509.Certificate{Subject: pkix.Name{CommonName: cn}, IsCA: true, BasicConstraintsValid: true,
			KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	}
	ca, caKey, caDER := issue(caTmpl("streamer test CA"), nil, nil)
	_, _, otherDER := issue(caTmpl("another CA"), nil, nil)
	_, srvKey, srvDER := issue(&x509.Certificate{Subject: pkix.Name{CommonName: "node"}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, KeyUsage: x509.KeyUsageDigitalSignature}, ca, caKey)
	_, cliKey, cliDER := issue(&x509.Certificate{Subject: pkix.Name{CommonName: "gateway"},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, KeyUsage: x509.KeyUsageDigitalSignature}, ca, caKey)
	return testPKI{
		ca: write("ca.pem", "CERTIFICATE", caDER), otherCA: write("other-ca.pem", "CERTIFICATE", otherDER),
		serverCert: write("server.pem", "CERTIFICATE", srvDER), serverKey: write("server-key.pem", "EC PRIVATE KEY", keyDER(srvKey)),
		clientCert: write("client.pem", "CERTIFICATE", cliDER), clientKey: write("client-key.pem", "EC PRIVATE KEY", keyDER(cliKey)),
	}
}

// TestTLSBetweenClientsAndNode: a node serving TLS is reached with --tls-ca
// and not by plaintext or an untrusted CA; with --tls-client-ca it also
// requires a client certificate its CA signed (mutual TLS).
func TestTLSBetweenClientsAndNode(t *testing.T) {
	exe := testbin.Streamer(t)
	pki := newTestPKI(t)
	event := `{"event_id":"e1","collection":"c","id":"d","op":"create","doc":{"a":1}}` + "\n"
	publish := func(addr string, args ...string) cliRun {
		return runCLI(t, exe, event, nil, append([]string{"publish", "--addr", addr, "--timeout", "5s"}, args...)...)
	}

	t.Run("tls", func(t *testing.T) {
		node := startServe(t, exe, nil, "--tls-cert", pki.serverCert, "--tls-key", pki.serverKey)
		node.waitReady(t, "the TLS node")
		if !strings.Contains(node.stderr(), `"transport":"tls"`) {
			t.Fatalf("the listening line does not say tls:\n%s", node.stderr())
		}
		if r := publish(node.grpcAddr, "--tls-ca", pki.ca); r.code != 0 {
			t.Fatalf("publish with --tls-ca: exit %d\n%s", r.code, r.stderr)
		}
		w := startWatch(t, exe, nil, "--addr", node.grpcAddr, "--collection", "c", "--count", "1", "--timeout", "20s", "--tls-ca", pki.ca)
		second := strings.Replace(event, `"e1"`, `"e2"`, 1) // e1 again would be dropped as a replay
		if r := runCLI(t, exe, second, nil, "publish", "--addr", node.grpcAddr, "--tls-ca", pki.ca); r.code != 0 {
			t.Fatalf("publish: exit %d\n%s", r.code, r.stderr)
		}
		if code := w.wait(t); code != 0 || !strings.Contains(w.stdout.String(), `"event_id":"e2"`) {
			t.Fatalf("watch over TLS: exit %d, stdout %q\n%s", code, w.stdout.String(), w.errText())
		}
		for name, args := range map[string][]string{"plaintext": nil, "an untrusted CA": {"--tls-ca", pki.otherCA}} {
			if r := publish(node.grpcAddr, args...); r.code == 0 {
				t.Errorf("publish with %s succeeded", name)
			}
		}
	})

	t.Run("mutual tls", func(t *testing.T) {
		node := startServe(t, exe, nil, "--tls-cert", pki.serverCert, "--tls-key", pki.serverKey, "--tls-client-ca", pki.ca)
		node.waitReady(t, "the mTLS node")
		if r := publish(node.grpcAddr, "--tls-ca", pki.ca); r.code == 0 {
			t.Fatal("publish without a client certificate succeeded")
		}
		if r := publish(node.grpcAddr, "--tls-ca", pki.ca, "--tls-cert", pki.clientCert, "--tls-key", pki.clientKey); r.code != 0 {
			t.Fatalf("publish with a client certificate: exit %d\n%s", r.code, r.stderr)
		}

		// The gateway: it connects (and listens) with its certificate, and
		// without one gives up with the handshake's reason.
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		gwArgs := []string{"--addr", node.grpcAddr, "--insecure-no-auth", "--insecure-tenant", "t", "--tls-ca", pki.ca}
		rec, _, done := startGatewayInProcess(t, ctx, append(gwArgs, "--tls-cert", pki.clientCert, "--tls-key", pki.clientKey)...)
		if rec["listen_addr"] == nil {
			t.Fatalf("gateway listening record %v", rec)
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatalf("gateway stop: %v", err)
		}
		var stderr bytes.Buffer
		err := runGateway(context.Background(), append(gwArgs, "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0", "--dial-timeout", "2s"),
			stdio{in: strings.NewReader(""), out: io.Discard, err: &stderr})
		if err == nil {
			t.Fatal("a gateway without a client certificate connected to the mTLS node")
		}
	})

	t.Run("flags", func(t *testing.T) {
		r := runCLI(t, exe, "", nil, "serve", "--tls-cert", pki.serverCert)
		if r.code != 2 || !strings.Contains(r.stderr, "--tls-cert and --tls-key go together") {
			t.Fatalf("serve --tls-cert alone: exit %d, %q", r.code, r.stderr)
		}
		r = runCLI(t, exe, event, nil, "publish", "--addr", "127.0.0.1:1", "--tls-ca", filepath.Join(t.TempDir(), "missing.pem"))
		if r.code != 2 || !strings.Contains(r.stderr, "--tls-ca") {
			t.Fatalf("publish --tls-ca missing: exit %d, %q", r.code, r.stderr)
		}
	})
}
