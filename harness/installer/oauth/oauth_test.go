package oauth

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestHeader(t *testing.T) {
	c := Credentials{ConsumerKey: "ck", TokenKey: "tk", TokenSecret: "ts"}
	got := c.Header(1700000000, "n0nce")
	want := `OAuth oauth_version="1.0", oauth_signature_method="PLAINTEXT", oauth_consumer_key="ck", oauth_token="tk", oauth_signature="&ts", oauth_nonce="n0nce", oauth_timestamp="1700000000"`
	if got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
}

func TestParseDebconfCredentials(t *testing.T) {
	got, err := ParseDebconfCredentials("oauth_consumer_key=ck&oauth_token_key=tk&oauth_token_secret=ts\n")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(Credentials{ConsumerKey: "ck", TokenKey: "tk", TokenSecret: "ts"}, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if _, err := ParseDebconfCredentials("oauth_consumer_key=ck"); err == nil {
		t.Error("credentials without a token accepted")
	}
}
