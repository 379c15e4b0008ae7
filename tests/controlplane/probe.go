package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// prober talks to the apiserver as the admin user. It uses plain net/http
// rather than client-go: the supervisor only needs two GETs.
type prober struct {
	server string
	client *http.Client
}

func newProber(server string, p *pki) (*prober, error) {
	tlsCfg, err := clientTLS(p.caCert, p.adminCert, p.adminKey)
	if err != nil {
		return nil, err
	}
	return &prober{
		server: server,
		client: &http.Client{
			Timeout:   3 * time.Second,
			Transport: &http.Transport{TLSClientConfig: tlsCfg, DisableKeepAlives: true},
		},
	}, nil
}

func (p *prober) get(ctx context.Context, path string) (int, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.server+path, nil)
	if err != nil {
		return 0, "", err
	}
	resp, err := p.client.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	return resp.StatusCode, strings.TrimSpace(string(body)), nil
}

// apiserverReady is true when /readyz says "ok": storage, RBAC bootstrap
// roles, priority-and-fairness config and the other post-start hooks are done.
func (p *prober) apiserverReady(ctx context.Context) error {
	code, body, err := p.get(ctx, "/readyz")
	if err != nil {
		return err
	}
	if code != http.StatusOK || body != "ok" {
		return fmt.Errorf("/readyz: %d %.200s", code, body)
	}
	return nil
}

func (p *prober) defaultServiceAccountExists(ctx context.Context) error {
	code, body, err := p.get(ctx, "/api/v1/namespaces/default/serviceaccounts/default")
	if err != nil {
		return err
	}
	if code != http.StatusOK {
		return fmt.Errorf("default ServiceAccount: %d %.200s", code, body)
	}
	return nil
}
