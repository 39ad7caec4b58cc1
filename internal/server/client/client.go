// Package client talks to a running Custody daemon's HTTPS API, for the
// command line's --server mode: people read versions, the audit log and
// incidents, and handle incidents, with a token and no vault passphrase.
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/custodyhq/custody/internal/server/tlscert"
)

// Client is one server and the token it presents.
type Client struct {
	base  *url.URL
	token string
	http  *http.Client
}

// Options say how to trust the server's certificate: a pinned SHA-256
// fingerprint (as `custody protect` prints it), a CA file, or neither
// (the system's roots).
type Options struct {
	Fingerprint string
	CAFile      string
	Timeout     time.Duration // per request (default 2 min)
}

// ErrNoToken: the client has no token to present.
var ErrNoToken = errors.New("no API token: set CUSTODY_TOKEN or pass --token-file FILE")

// New returns a client for the server at rawURL (https://host:port).
func New(rawURL, token string, opts Options) (*Client, error) {
	u, err := url.Parse(rawURL)
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		return nil, fmt.Errorf("server %q: give its URL, like https://127.0.0.1:8443", rawURL)
	}
	if u.Scheme == "http" && !isLoopback(u.Hostname()) {
		return nil, fmt.Errorf("server %q: plain http would send the token in the clear; use https", rawURL)
	}
	if token == "" {
		return nil, ErrNoToken
	}
	tc, err := tlscert.ClientConfig(opts.Fingerprint, opts.CAFile)
	if err != nil {
		return nil, err
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 2 * time.Minute
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = tc
	u.Path = strings.TrimSuffix(u.Path, "/")
	return &Client{base: u, token: token, http: &http.Client{Transport: tr, Timeout: opts.Timeout}}, nil
}

func isLoopback(host string) bool {
	return host == "localhost" || host == "127.0.0.1" || host == "::1"
}

// Error is a refusal or failure the server answered.
type Error struct {
	Status  int
	Message string
}

func (e *Error) Error() string {
	return fmt.Sprintf("server: %s (HTTP %d)", e.Message, e.Status)
}

// Get fetches path (under the server's base URL, e.g. /api/v1/datasets)
// with query and decodes the JSON answer into out.
func (c *Client) Get(ctx context.Context, path string, query url.Values, out any) error {
	return c.do(ctx, http.MethodGet, path, query, nil, out)
}

// Post sends body as JSON (nil: none) and decodes the answer into out.
func (c *Client) Post(ctx context.Context, path string, body, out any) error {
	return c.do(ctx, http.MethodPost, path, nil, body, out)
}

// Delete deletes path and decodes the answer into out.
func (c *Client) Delete(ctx context.Context, path string, out any) error {
	return c.do(ctx, http.MethodDelete, path, nil, nil, out)
}

func (c *Client) do(ctx context.Context, method, path string, query url.Values, body, out any) error {
	u := *c.base
	u.Path += path
	u.RawQuery = query.Encode()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), rd)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("server %s: %w", c.base.Host, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 256<<20))
	if err != nil {
		return fmt.Errorf("server %s: read the answer: %w", c.base.Host, err)
	}
	if resp.StatusCode >= 400 {
		var e struct{ Error string }
		if json.Unmarshal(b, &e) != nil || e.Error == "" {
			e.Error = http.StatusText(resp.StatusCode)
		}
		return &Error{Status: resp.StatusCode, Message: e.Error}
	}
	if out == nil {
		return nil
	}
	if raw, ok := out.(*json.RawMessage); ok {
		*raw = append((*raw)[:0], b...)
		return nil
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("server %s: the answer to %s %s is not what this custody expects: %w", c.base.Host, method, path, err)
	}
	return nil
}
