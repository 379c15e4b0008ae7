package main

import (
	"context"
	"encoding/json"
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

// nodesReady checks that every named Node reports Ready=True with a
// heartbeat not older than since (so from this run's simulator, not left
// over in kept etcd data), and carries no NoSchedule/NoExecute taint (the
// not-ready taint the apiserver adds at creation is gone).
func (p *prober) nodesReady(ctx context.Context, names []string, since time.Time) error {
	for _, name := range names {
		code, body, err := p.get(ctx, "/api/v1/nodes/"+name)
		if err != nil {
			return err
		}
		if code != http.StatusOK {
			return fmt.Errorf("node %s: %d %.200s", name, code, body)
		}
		var node struct {
			Spec struct {
				Taints []struct{ Key, Effect string }
			}
			Status struct {
				Conditions []struct {
					Type, Status      string
					LastHeartbeatTime time.Time
				}
			}
		}
		if err := json.Unmarshal([]byte(body), &node); err != nil {
			return fmt.Errorf("node %s: %w", name, err)
		}
		ready := false
		for _, c := range node.Status.Conditions {
			if c.Type == "Ready" && c.Status == "True" && !c.LastHeartbeatTime.Before(since.Truncate(time.Second)) {
				ready = true
			}
		}
		if !ready {
			return fmt.Errorf("node %s is not Ready (yet)", name)
		}
		for _, t := range node.Spec.Taints {
			if t.Effect == "NoSchedule" || t.Effect == "NoExecute" {
				return fmt.Errorf("node %s still has taint %s:%s", name, t.Key, t.Effect)
			}
		}
	}
	return nil
}
