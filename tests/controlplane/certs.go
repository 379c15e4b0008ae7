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
	schedulerCert, schedKey string // CN=system:kube-scheduler
	nodesCert, nodesKey     string // the node simulator: O=system:masters, CN=controlplane:nodes
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
		schedulerCert: p("scheduler.crt"), schedKey: p("scheduler.key"),
		nodesCert: p("nodes.crt"), nodesKey: p("nodes.key"),
		saKey: p("sa.key"), saPub: p("sa.pub"),
	}
}

// leafSpec describes one certificate signed by the CA.
type leafSpec struct {
	cert, key string
	subject   pkix.Name
	usage     x509.ExtKeyUsage
	dns       []string
	ips       []net.IP
}

func (p *pki) leaves() []leafSpec {
	client := func(cert, key, cn string, groups ...string) leafSpec {
		return leafSpec{cert: cert, key: key, usage: x509.ExtKeyUsageClientAuth,
			subject: pkix.Name{CommonName: cn, Organization: groups}}
	}
	return []leafSpec{
		// The serving cert covers loopback (how tests connect) plus the
		// in-cluster names and the first service IP, as a real cluster's does.
		{cert: p.servingCert, key: p.servingKey, usage: x509.ExtKeyUsageServerAuth,
			subject: pkix.Name{CommonName: "kube-apiserver"},
			dns:     []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"},
			ips:     []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("::1"), net.ParseIP(firstServiceIP)}},
		client(p.adminCert, p.adminKey, "kubernetes-admin", "system:masters"),
		client(p.kcmCert, p.kcmKey, "system:kube-controller-manager"),
		client(p.schedulerCert, p.schedKey, "system:kube-scheduler"),
		// The simulator writes Nodes, Leases and Pod status for many nodes;
		// the Node authorizer would tie a system:node:NAME identity to one
		// node, so this test tool simply gets cluster-admin rights.
		client(p.nodesCert, p.nodesKey, "controlplane:nodes", "system:masters"),
	}
}

// ensure reuses the CA if it is complete and unexpired (and then every
// other file that is too), and generates whatever is missing: a data dir
// kept by an older build that lacks a newer certificate gets just that one.
// reused reports whether the CA was reused.
func (p *pki) ensure() (reused bool, err error) {
	if err := os.MkdirAll(p.dir, 0o700); err != nil {
		return false, err
	}
	ca, caKey, err := loadPair(p.caCert, p.caKey)
	reused = err == nil
	if !reused {
		if ca, caKey, err = p.generateCA(); err != nil {
			return false, err
		}
	}
	for _, l := range p.leaves() {
		if reused && pairUsable(l.cert, l.key) {
			continue
		}
		if err := p.generateLeaf(l, ca, caKey); err != nil {
			return false, err
		}
	}
	if reused && fileExists(p.saKey) && fileExists(p.saPub) {
		return true, nil
	}
	return reused, p.generateSA()
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

func pairUsable(certPath, keyPath string) bool {
	c, err := tls.LoadX509KeyPair(certPath, keyPath)
	return err == nil && time.Now().Add(24*time.Hour).Before(c.Leaf.NotAfter)
}

// loadPair loads a usable (complete, unexpired) certificate and its key.
func loadPair(certPath, keyPath string) (*x509.Certificate, crypto.Signer, error) {
	if !pairUsable(certPath, keyPath) {
		return nil, nil, errors.New("missing or expiring: " + certPath)
	}
	c, err := tls.LoadX509KeyPair(certPath, keyPath)
	if err != nil {
		return nil, nil, err
	}
	signer, ok := c.PrivateKey.(crypto.Signer)
	if !ok {
		return nil, nil, errors.New("not a signing key: " + keyPath)
	}
	return c.Leaf, signer, nil
}

// Certificates are short-lived test material; a year is far longer than
// any test run, yet a kept data dir does not stay valid forever.
const (
	caValidity   = 10 * 365 * 24 * time.Hour
	leafValidity = 365 * 24 * time.Hour
)

// notBefore tolerates small clock differences.
func notBefore() time.Time { return time.Now().Add(-time.Hour) }

func (p *pki) generateCA() (*x509.Certificate, crypto.Signer, error) {
	now := notBefore()
	caKey, err := newKey()
	if err != nil {
		return nil, nil, err
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
		return nil, nil, err
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, nil, err
	}
	if err := writeCertKey(p.caCert, p.caKey, caDER, caKey); err != nil {
		return nil, nil, err
	}
	return ca, caKey, nil
}

func (p *pki) generateLeaf(l leafSpec, ca *x509.Certificate, caKey crypto.Signer) error {
	now := notBefore()
	key, err := newKey()
	if err != nil {
		return err
	}
	der, err := sign(&x509.Certificate{
		Subject:     l.subject,
		NotBefore:   now,
		NotAfter:    now.Add(leafValidity),
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage: []x509.ExtKeyUsage{l.usage},
		DNSNames:    l.dns,
		IPAddresses: l.ips,
	}, ca, key.Public(), caKey)
	if err != nil {
		return err
	}
	return writeCertKey(l.cert, l.key, der, key)
}

// generateSA writes the service-account token key pair: kube-apiserver
// signs tokens with the private key and verifies them with the public one;
// kube-controller-manager signs legacy token Secrets with the same private key.
func (p *pki) generateSA() error {
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
