package lab

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"

	"github.com/canonical/gomaasclient/client"
)

// root is gomaasclient's API client at /MAAS/api/2.0/, for the calls it has no method for.
func root(c *client.Client) (client.APIClient, error) {
	m, ok := c.Machines.(*client.Machines)
	if !ok {
		return client.APIClient{}, fmt.Errorf("lab: unexpected gomaasclient Machines type %T", c.Machines)
	}
	// Machines' client is rooted at the API version; its parent path is the API root.
	return m.APIClient, nil
}

func apiPost(ctx context.Context, c *client.Client, path, op string, params url.Values, out any) error {
	r, err := root(c)
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if params == nil {
		params = url.Values{}
	}
	return r.GetSubObject(path).Post(op, params, func(b []byte) error {
		if out == nil || len(b) == 0 {
			return nil
		}
		return json.Unmarshal(b, out)
	})
}

func apiGet(ctx context.Context, c *client.Client, path, op string, params url.Values, out any) error {
	r, err := root(c)
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if params == nil {
		params = url.Values{}
	}
	return r.GetSubObject(path).Get(op, params, func(b []byte) error {
		if out == nil {
			return nil
		}
		if s, ok := out.(*[]byte); ok {
			*s = append([]byte(nil), b...)
			return nil
		}
		return json.Unmarshal(b, out)
	})
}
