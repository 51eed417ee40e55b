package oauth

import (
	"net/http"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseHeader(t *testing.T) {
	cases := []struct {
		name     string
		header   string
		ok       bool
		problems []string
		badType  bool
	}{
		{"gomaasapi style", `OAuth realm="MAAS API", oauth_consumer_key="ck", oauth_token="tk", oauth_signature_method="PLAINTEXT", oauth_signature="%26ts", oauth_timestamp="1700000000", oauth_nonce="n", oauth_version="1.0"`, true, nil, false},
		{"curtin style, unquoted", `OAuth oauth_version=1.0, oauth_signature_method=PLAINTEXT, oauth_consumer_key=ck, oauth_token=tk, oauth_signature=&ts, oauth_nonce=n, oauth_timestamp=1`, true, nil, false},
		{"missing token", `OAuth oauth_consumer_key="ck", oauth_signature="%26ts", oauth_signature_method="PLAINTEXT", oauth_timestamp="1", oauth_nonce="n"`, true, []string{"oauth_token is missing"}, false},
		{"bad timestamp", `OAuth oauth_consumer_key="ck", oauth_token="tk", oauth_signature="%26ts", oauth_signature_method="PLAINTEXT", oauth_timestamp="x", oauth_nonce="n"`, true, []string{"oauth_timestamp has an unexpected type"}, true},
		{"not OAuth", `Bearer abc`, false, nil, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p, ok := ParseHeader(c.header)
			if ok != c.ok {
				t.Fatalf("ok = %v", ok)
			}
			if !ok {
				return
			}
			probs, bad := p.Problems()
			if diff := cmp.Diff(c.problems, probs); diff != "" || bad != c.badType {
				t.Errorf("problems (-want +got):\n%s badType %v", diff, bad)
			}
		})
	}
}

func TestSignAndCheck(t *testing.T) {
	c := NewCredentials()
	if len(c.ConsumerKey) != KeySize || len(c.TokenKey) != KeySize || len(c.TokenSecret) != SecretSize {
		t.Fatalf("key sizes %d/%d/%d", len(c.ConsumerKey), len(c.TokenKey), len(c.TokenSecret))
	}
	back, err := ParseKey(c.String())
	if err != nil || back != c {
		t.Fatalf("ParseKey(String()) = %v, %v", back, err)
	}
	for _, bad := range []string{"", "a:b", "a:b:c:d", "a::c"} {
		if _, err := ParseKey(bad); err == nil {
			t.Errorf("ParseKey(%q) succeeded", bad)
		}
	}
	req, _ := http.NewRequest("GET", "http://x/", nil)
	Sign(req, c)
	p, ok := ParseHeader(req.Header.Get("Authorization"))
	if !ok {
		t.Fatal("signed header does not parse")
	}
	if probs, _ := p.Problems(); probs != nil {
		t.Fatalf("problems: %v", probs)
	}
	if p["oauth_token"] != c.TokenKey || p["oauth_consumer_key"] != c.ConsumerKey {
		t.Errorf("params = %v", p)
	}
	if !CheckPLAINTEXT(p["oauth_signature"], "", c.TokenSecret) {
		t.Error("signature does not check")
	}
	if CheckPLAINTEXT(p["oauth_signature"], "", c.TokenSecret+"x") {
		t.Error("signature checks against the wrong secret")
	}
}
