// Package oauth signs HTTP requests the way MAAS nodes do: OAuth 1.0 PLAINTEXT with an empty
// consumer secret, retrying once with the server's clock on 401/403 like curtin and cloud-init.
package oauth

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

// Credentials are a node's MAAS token. ConsumerSecret is empty for MAAS.
type Credentials struct {
	ConsumerKey    string `json:"consumer_key" yaml:"consumer_key"`
	ConsumerSecret string `json:"consumer_secret,omitempty" yaml:"consumer_secret,omitempty"`
	TokenKey       string `json:"token_key" yaml:"token_key"`
	TokenSecret    string `json:"token_secret" yaml:"token_secret"`
}

// Empty reports whether no token is set (requests then go unsigned, as cloud-init does).
func (c Credentials) Empty() bool { return c.TokenKey == "" && c.ConsumerKey == "" }

// Header returns the Authorization header value for the given timestamp and nonce:
//
//	OAuth oauth_version="1.0", oauth_signature_method="PLAINTEXT", oauth_consumer_key="..",
//	oauth_token="..", oauth_signature="<consumer_secret>&<token_secret>", oauth_nonce="..",
//	oauth_timestamp=".."
//
// The signature is not percent-encoded (MAAS's own curtin_install.py sends it this way;
// oauthlib would send %26, and MAAS accepts both).
func (c Credentials) Header(timestamp int64, nonce string) string {
	return fmt.Sprintf(`OAuth oauth_version="1.0", oauth_signature_method="PLAINTEXT", oauth_consumer_key="%s", oauth_token="%s", oauth_signature="%s&%s", oauth_nonce="%s", oauth_timestamp="%d"`,
		c.ConsumerKey, c.TokenKey, c.ConsumerSecret, c.TokenSecret, nonce, timestamp)
}

// Nonce returns a random nonce.
func Nonce() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Client sends signed requests and remembers the clock skew per host.
type Client struct {
	HTTP  *http.Client
	Creds Credentials
	// Now is the local clock (tests set it); nil means time.Now.
	Now func() time.Time

	mu   sync.Mutex
	skew map[string]time.Duration
}

// NewClient returns a Client; a nil hc means http.DefaultClient.
func NewClient(hc *http.Client, creds Credentials) *Client {
	if hc == nil {
		hc = http.DefaultClient
	}
	return &Client{HTTP: hc, Creds: creds, skew: map[string]time.Duration{}}
}

func (c *Client) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

// Do sends a request built by mk (called again for the retry), signed unless the
// credentials are empty. On 401 or 403 with a Date header it stores the host's skew and
// retries once, as cloud-init's OauthUrlHelper does.
func (c *Client) Do(ctx context.Context, mk func(ctx context.Context) (*http.Request, error)) (*http.Response, error) {
	for attempt := 0; ; attempt++ {
		req, err := mk(ctx)
		if err != nil {
			return nil, err
		}
		if !c.Creds.Empty() {
			c.mu.Lock()
			sk := c.skew[req.URL.Host]
			c.mu.Unlock()
			ts := c.now().Add(sk).Unix()
			req.Header.Set("Authorization", c.Creds.Header(ts, Nonce()))
		}
		resp, err := c.HTTP.Do(req)
		if err != nil {
			return nil, err
		}
		if attempt == 0 && !c.Creds.Empty() && (resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden) {
			if d := resp.Header.Get("Date"); d != "" {
				if t, perr := http.ParseTime(d); perr == nil {
					c.mu.Lock()
					c.skew[req.URL.Host] = t.Sub(c.now())
					c.mu.Unlock()
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					continue
				}
			}
		}
		return resp, nil
	}
}

// Get fetches url and returns the body; a non-2xx status is an *HTTPError.
func (c *Client) Get(ctx context.Context, u string) ([]byte, error) {
	resp, err := c.Do(ctx, func(ctx context.Context) (*http.Request, error) {
		return http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	})
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", u, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("GET %s: reading body: %w", u, err)
	}
	if resp.StatusCode/100 != 2 {
		return body, &HTTPError{URL: u, Method: http.MethodGet, Status: resp.StatusCode, Body: strings.TrimSpace(string(body))}
	}
	return body, nil
}

// HTTPError is a non-2xx answer.
type HTTPError struct {
	Method string
	URL    string
	Status int
	Body   string
}

func (e *HTTPError) Error() string {
	msg := fmt.Sprintf("%s %s: HTTP %d %s", e.Method, e.URL, e.Status, http.StatusText(e.Status))
	if e.Body != "" && len(e.Body) < 200 {
		msg += ": " + e.Body
	}
	return msg
}

// ParseDebconfCredentials parses MAAS's debconf credentials form
// "oauth_consumer_key=..&oauth_token_key=..&oauth_token_secret=..".
func ParseDebconfCredentials(s string) (Credentials, error) {
	v, err := url.ParseQuery(strings.TrimSpace(s))
	if err != nil {
		return Credentials{}, fmt.Errorf("maas-metadata-credentials %q: %w", s, err)
	}
	c := Credentials{ConsumerKey: v.Get("oauth_consumer_key"), TokenKey: v.Get("oauth_token_key"), TokenSecret: v.Get("oauth_token_secret")}
	if c.TokenKey == "" {
		return c, fmt.Errorf("maas-metadata-credentials %q: no oauth_token_key", s)
	}
	return c, nil
}
