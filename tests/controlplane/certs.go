package main

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// pki holds the paths of every key and certificate the control plane uses.
// They are plain PEM files so that the components read them with their usual
// flags, and so that a restart on the same --data-dir reuses them (a client
// holding the old kubeconfig keeps working).
type pki struct {
	dir string

	caCert, caKey           string
	servingCert, servingKey string // kube-apiserver's TLS certificate
	adminCert, adminKey     string // O=system:masters, CN=kubernetes-admin
	kcmCert, kcmKey         string // CN=system:kube-controller-manager
	saKey, saPub            string // service-account token signing key pair
}

func newPKI(dir string) *pki {
	p := func(name string) string { return filepath.Join(dir, name) }
	return &pki{
		dir:    dir,
		caCert: p("ca.crt"), caKey: p("ca.key"),
		servingCert: p("apiserver.crt"), servingKey: p("apiserver.key"),
		adminCert: p("admin.crt"), adminKey: p("admin.key"),
		kcmCert: p("controller-manager.crt"), kcmKey: p("controller-manager.key"),
		saKey: p("sa.key"), saPub: p("sa.pub"),
	}
}

func (p *pki) files() []string {
	return []string{p.caCert, p.caKey, p.servingCert, p.servingKey, p.adminCert,
		p.adminKey, p.kcmCert, p.kcmKey, p.saKey, p.saPub}
}

// ensure reuses an existing, complete and unexpired set of files, and
// otherwise generates a fresh one.
func (p *pki) ensure() (reused bool, err error) {
	if p.usable() {
		return true, nil
	}
	return false, p.generate()
}

func (p *pki) usable() bool {
	for _, f := range p.files() {
		if _, err := os.Stat(f); err != nil {
			return false
		}
	}
	for _, pair := range [][2]string{{p.servingCert, p.servingKey}, {p.adminCert, p.adminKey}, {p.kcmCert, p.kcmKey}} {
		c, err := tls.LoadX509KeyPair(pair[0], pair[1])
		if err != nil || time.Now().Add(24*time.Hour).After(c.Leaf.NotAfter) {
			return false
		}
	}
	return true
}

// Certificates are short-lived test material; a year is far longer than
// any test run, yet a kept data dir does not stay valid forever.
const (
	caValidity   = 10 * 365 * 24 * time.Hour
	leafValidity = 365 * 24 * time.Hour
)

func (p *pki) generate() error {
	if err := os.MkdirAll(p.dir, 0o700); err != nil {
		return err
	}
	now := time.Now().Add(-time.Hour) // tolerate small clock differences

	caKey, err := newKey()
	if err != nil {
		return err
	}
	caTmpl := &x509.Certificate{
		Subject:               pkix.Name{CommonName: "controlplane-ca"},
		NotBefore:             now,
		NotAfter:              now.Add(caValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	caDER, err := sign(caTmpl, caTmpl, caKey.Public(), caKey)
	if err != nil {
		return err
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return err
	}
	if err := writeCertKey(p.caCert, p.caKey, caDER, caKey); err != nil {
		return err
	}

	leaf := func(certPath, keyPath string, subject pkix.Name, usage x509.ExtKeyUsage, dns []string, ips []net.IP) error {
		key, err := newKey()
		if err != nil {
			return err
		}
		der, err := sign(&x509.Certificate{
			Subject:     subject,
			NotBefore:   now,
			NotAfter:    now.Add(leafValidity),
			KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
			ExtKeyUsage: []x509.ExtKeyUsage{usage},
			DNSNames:    dns,
			IPAddresses: ips,
		}, ca, key.Public(), caKey)
		if err != nil {
			return err
		}
		return writeCertKey(certPath, keyPath, der, key)
	}

	// The serving cert covers loopback (how tests connect) plus the
	// in-cluster names and the first service IP, as a real cluster's does.
	if err := leaf(p.servingCert, p.servingKey, pkix.Name{CommonName: "kube-apiserver"}, x509.ExtKeyUsageServerAuth,
		[]string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"},
		[]net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("::1"), net.ParseIP(firstServiceIP)}); err != nil {
		return err
	}
	if err := leaf(p.adminCert, p.adminKey, pkix.Name{CommonName: "kubernetes-admin", Organization: []string{"system:masters"}},
		x509.ExtKeyUsageClientAuth, nil, nil); err != nil {
		return err
	}
	if err := leaf(p.kcmCert, p.kcmKey, pkix.Name{CommonName: "system:kube-controller-manager"},
		x509.ExtKeyUsageClientAuth, nil, nil); err != nil {
		return err
	}

	// Service-account tokens: kube-apiserver signs them (private key) and
	// verifies them (public key); kube-controller-manager signs legacy
	// token Secrets with the same private key.
	saKey, err := newKey()
	if err != nil {
		return err
	}
	if err := writeKey(p.saKey, saKey); err != nil {
		return err
	}
	pubDER, err := x509.MarshalPKIXPublicKey(saKey.Public())
	if err != nil {
		return err
	}
	return writePEM(p.saPub, "PUBLIC KEY", pubDER, 0o644)
}

// ECDSA P-256 keeps generation instant; every component and client
// (Go, Python/OpenSSL) accepts it, and ES256 is a supported SA token algorithm.
func newKey() (*ecdsa.PrivateKey, error) {
	return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
}

func sign(tmpl, parent *x509.Certificate, pub crypto.PublicKey, signer crypto.Signer) ([]byte, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, err
	}
	tmpl.SerialNumber = serial
	return x509.CreateCertificate(rand.Reader, tmpl, parent, pub, signer)
}

func writeCertKey(certPath, keyPath string, der []byte, key *ecdsa.PrivateKey) error {
	if err := writePEM(certPath, "CERTIFICATE", der, 0o644); err != nil {
		return err
	}
	return writeKey(keyPath, key)
}

func writeKey(path string, key *ecdsa.PrivateKey) error {
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	return writePEM(path, "EC PRIVATE KEY", der, 0o600)
}

func writePEM(path, blockType string, der []byte, mode os.FileMode) error {
	return writeFileAtomic(path, pem.EncodeToMemory(&pem.Block{Type: blockType, Bytes: der}), mode)
}

// clientTLS builds a TLS config that trusts our CA and presents the given
// client certificate: used by the supervisor's own readiness probes.
func clientTLS(caPath, certPath, keyPath string) (*tls.Config, error) {
	caPEM, err := os.ReadFile(caPath)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, errors.New("no certificate in " + caPath)
	}
	cert, err := tls.LoadX509KeyPair(certPath, keyPath)
	if err != nil {
		return nil, fmt.Errorf("load client cert: %w", err)
	}
	return &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
}
