// Package oauth implements OAuth 1.0 PLAINTEXT as MAAS uses it: parsing and checking the
// Authorization header, signing requests, and generating MAAS-sized keys.
package oauth

import (
	"crypto/rand"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// MAAS key sizes (src/maasservicelayer/services/users.py).
const (
	KeySize    = 18
	SecretSize = 32
)

// Required are the parameters MAAS insists on (src/maasserver/api/auth.py).
var Required = []string{
	"oauth_consumer_key", "oauth_token", "oauth_signature",
	"oauth_signature_method", "oauth_timestamp", "oauth_nonce",
}

// Credentials are a MAAS API key: consumer key, token key and token secret. The consumer
// secret is always empty in MAAS.
type Credentials struct {
	ConsumerKey string
	TokenKey    string
	TokenSecret string
}

// String returns the key in MAAS's "consumer_key:token_key:token_secret" form.
func (c Credentials) String() string {
	return c.ConsumerKey + ":" + c.TokenKey + ":" + c.TokenSecret
}

// ParseKey parses "consumer_key:token_key:token_secret".
func ParseKey(s string) (Credentials, error) {
	p := strings.Split(strings.TrimSpace(s), ":")
	if len(p) != 3 || p[0] == "" || p[1] == "" || p[2] == "" {
		return Credentials{}, fmt.Errorf("invalid API key %q: want consumer_key:token_key:token_secret", s)
	}
	return Credentials{ConsumerKey: p[0], TokenKey: p[1], TokenSecret: p[2]}, nil
}

// Params are the parameters of an "OAuth ..." Authorization header, unquoted and
// percent-decoded.
type Params map[string]string

// ParseHeader parses an Authorization header value the way MAAS does: it must start with
// "OAuth"; the rest is comma-separated key="value" pairs. ok is false when the header does
// not start with "OAuth".
func ParseHeader(h string) (p Params, ok bool) {
	h = strings.TrimSpace(h)
	if !strings.HasPrefix(h, "OAuth") {
		return nil, false
	}
	h = strings.TrimSpace(strings.TrimPrefix(h, "OAuth"))
	p = Params{}
	for _, part := range strings.Split(h, ",") {
		k, v, found := strings.Cut(strings.TrimSpace(part), "=")
		if !found {
			continue
		}
		v = strings.Trim(strings.TrimSpace(v), `"`)
		if dec, err := url.QueryUnescape(v); err == nil {
			v = dec
		}
		p[strings.TrimSpace(k)] = v
	}
	return p, true
}

// Problems lists the required parameters that are missing ("oauth_token is missing") or
// malformed ("oauth_timestamp has an unexpected type"), in MAAS's words. badType reports
// whether any problem is a malformed value (MAAS answers those with 400, the rest with 401).
func (p Params) Problems() (problems []string, badType bool) {
	for _, k := range Required {
		v, ok := p[k]
		switch {
		case !ok:
			problems = append(problems, k+" is missing")
		case k == "oauth_timestamp":
			if _, err := strconv.ParseInt(v, 10, 64); err != nil {
				problems = append(problems, k+" has an unexpected type")
				badType = true
			}
		}
	}
	return problems, badType
}

// CheckPLAINTEXT reports whether signature is the PLAINTEXT signature
// "<consumer_secret>&<token_secret>" (both percent-encoded).
func CheckPLAINTEXT(signature, consumerSecret, tokenSecret string) bool {
	want := url.QueryEscape(consumerSecret) + "&" + url.QueryEscape(tokenSecret)
	if signature == want {
		return true
	}
	// Some clients send the signature percent-encoded once more.
	if dec, err := url.QueryUnescape(signature); err == nil && dec == want {
		return true
	}
	return false
}

// Header returns the Authorization header value for c, as MAAS clients build it.
func Header(c Credentials) string {
	return fmt.Sprintf(`OAuth realm="", oauth_version="1.0", oauth_signature_method="PLAINTEXT", `+
		`oauth_consumer_key="%s", oauth_token="%s", oauth_signature="%s", oauth_nonce="%s", oauth_timestamp="%d"`,
		url.QueryEscape(c.ConsumerKey), url.QueryEscape(c.TokenKey),
		url.QueryEscape("&"+c.TokenSecret), RandomString(16), time.Now().Unix())
}

// Sign sets req's Authorization header for c.
func Sign(req *http.Request, c Credentials) { req.Header.Set("Authorization", Header(c)) }

const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

// RandomString returns n random letters and digits.
func RandomString(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic("oauth: crypto/rand failed: " + err.Error())
	}
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b)
}

// NewCredentials returns fresh credentials with MAAS's key sizes.
func NewCredentials() Credentials {
	return Credentials{ConsumerKey: RandomString(KeySize), TokenKey: RandomString(KeySize), TokenSecret: RandomString(SecretSize)}
}
