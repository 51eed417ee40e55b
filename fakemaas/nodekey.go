package fakemaas

import (
	"github.com/maasemu/maasemu/fakemaas/oauth"
)

// nodeInitUser owns the nodes' tokens, as MAAS's node-init user does.
const nodeInitUser = "maas-init-node"

// clearNodeToken deletes sid's token, if it has one (NodeKey.clear_token_for_node).
func (w *writer) clearNodeToken(sid string) {
	key, ok := w.r.nodeTokens[sid]
	if !ok {
		return
	}
	w.delToken(key)
	w.apply(func() {
		delete(w.r.tokens, key)
		if w.r.nodeTokens[sid] == key {
			delete(w.r.nodeTokens, sid)
		}
	})
}

// nodeTokenFor returns sid's token, creating it in w when it has none
// (NodeKey.get_token_for_node). The consumer secret is empty, as in MAAS.
func (w *writer) nodeTokenFor(sid string) *token {
	if key, ok := w.r.nodeTokens[sid]; ok {
		if t := w.r.tokens[key]; t != nil {
			return t
		}
	}
	c := oauth.NewCredentials()
	t := &token{ConsumerKey: c.ConsumerKey, ConsumerName: "Node " + sid, Key: c.TokenKey, Secret: c.TokenSecret,
		User: nodeInitUser, SystemID: sid, Created: w.next("token")}
	w.putToken(t)
	w.apply(func() {
		w.r.tokens[t.Key] = t
		w.r.nodeTokens[sid] = t.Key
	})
	return t
}

// nodeToken returns the node's token, creating it (committed) when it has none.
func (r *Region) nodeToken(sid string) (*token, error) {
	r.mu.RLock()
	if key, ok := r.nodeTokens[sid]; ok {
		if t := r.tokens[key]; t != nil {
			r.mu.RUnlock()
			return t, nil
		}
	}
	r.mu.RUnlock()
	var t *token
	err := r.locked(func() error {
		if r.machines[sid] == nil {
			return notFound("No Node matches the given query.")
		}
		return r.commit(func(w *writer) error {
			t = w.nodeTokenFor(sid)
			return nil
		})
	})
	return t, err
}

// NodeToken returns the OAuth credentials of machine systemID's node key (what its
// preseed carries), creating them when the machine has none. The consumer secret is
// empty. The key is deleted, and a new one made on the next request, whenever the
// machine's owner changes (allocation, release), as in MAAS.
func (r *Region) NodeToken(systemID string) (oauth.Credentials, error) {
	t, err := r.nodeToken(systemID)
	if err != nil {
		return oauth.Credentials{}, err
	}
	return oauth.Credentials{ConsumerKey: t.ConsumerKey, TokenKey: t.Key, TokenSecret: t.Secret}, nil
}
