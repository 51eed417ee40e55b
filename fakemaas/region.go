package fakemaas

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/maasemu/maasemu/fakemaas/blobstore"
	"github.com/maasemu/maasemu/fakemaas/curtincfg"
	"github.com/maasemu/maasemu/fakemaas/oauth"
	"github.com/maasemu/maasemu/trace"
)

// Options configure a Region.
type Options struct {
	// StateDir holds the database (maas.db), the blob store (blobs/), extracted
	// bootloaders (bootloaders/) and admin.apikey. Required.
	StateDir string
	// Events receives status changes, node events and power actions (nil: dropped).
	Events trace.Sink
	// Logger for the region (nil: slog.Default()).
	Logger *slog.Logger
	// AdminUsername is the admin user created on first start ("admin" when empty).
	AdminUsername string
	// HTTPClient fetches SimpleStreams over HTTP (nil: http.DefaultClient).
	HTTPClient *http.Client
	// Now returns the current time (nil: time.Now); tests may pin it.
	Now func() time.Time
	// DeployTimeout is how long a machine may stay Deploying (or Commissioning) without
	// progress before it is marked failed, as MAAS's status monitor does with node_timeout.
	// The clock restarts on every boot config request and on curtin's cmd-install,
	// stage-early and stage-late events. Zero: the node_timeout setting (30 minutes).
	DeployTimeout time.Duration
	// MonitorInterval is how often expired operations are looked for (zero: every
	// second, or a tenth of DeployTimeout when that is shorter).
	MonitorInterval time.Duration
	// Packer makes the curtin installer served as the curtin user-data
	// (curtin/<version>/user-data), as MAAS 3.7's get_curtin_userdata does with
	// curtin.pack.pack_install (nil: curtincfg.Pack, which needs real curtin on the
	// host; curtincfg.Packer{CurtinDir: dir} uses a curtin tree).
	Packer interface {
		Pack(ctx context.Context, spec curtincfg.InstallerSpec) ([]byte, error)
	}
}

// Region is the fake MAAS region: API 2.0, machines and their lifecycle, boot resources,
// SimpleStreams import, events and persistent state. Its methods are safe for concurrent
// use.
type Region struct {
	opts Options
	log  *slog.Logger
	sink trace.Sink
	now  func() time.Time

	lockFile *os.File
	db       *bolt.DB
	blobs    *blobstore.Store

	ctx    context.Context
	cancel context.CancelFunc
	bg     sync.WaitGroup

	mu          sync.RWMutex
	admin       string
	adminKey    oauth.Credentials
	tokens      map[string]*token // by token key
	machines    map[string]*machine
	macIndex    map[string]string // mac -> system_id
	resources   map[int]*resource
	fileIndex   map[int]int // file id -> resource id
	events      []*event
	bootSources map[int]*bootSource
	config      map[string]any
	seq         map[string]int64
	nodeTokens  map[string]string // system_id -> token key
	scriptSets  map[int]*scriptSet
	sshKeys     map[int]*sshKey
	net         *netModel // fabrics, VLANs, subnets, IP ranges, the rack (network.go)

	powerMu    sync.RWMutex
	powerTypes map[string]PowerDriver

	uploadMu sync.Mutex
	partials map[int]*blobstore.Partial

	afterCommit []func() // guarded by mu; see locked

	importMu   sync.Mutex
	importStop context.CancelFunc
	importDone chan struct{}
}

var (
	bucketMeta        = []byte("meta")
	bucketTokens      = []byte("tokens")
	bucketMachines    = []byte("machines")
	bucketResources   = []byte("resources")
	bucketEvents      = []byte("events")
	bucketBootSources = []byte("bootsources")
	bucketConfig      = []byte("config")
	bucketScriptSets  = []byte("scriptsets")
	bucketSSHKeys     = []byte("sshkeys")
	allBuckets        = [][]byte{bucketMeta, bucketTokens, bucketMachines, bucketResources, bucketEvents, bucketBootSources, bucketConfig, bucketScriptSets, bucketSSHKeys}
)

// ErrStateInUse is returned by New when another process holds the state directory.
var ErrStateInUse = errors.New("state directory is in use by another maasemu")

// New opens (creating on first start) the region's state in opts.StateDir. The first start
// creates the admin user and its API key, written to StateDir/admin.apikey (mode 0600) as
// consumer_key:token_key:token_secret. A second Region on the same directory is refused
// with ErrStateInUse. ctx bounds background work (imports) along with Close.
func New(ctx context.Context, opts Options) (*Region, error) {
	if opts.StateDir == "" {
		return nil, errors.New("fakemaas: Options.StateDir is required")
	}
	if opts.AdminUsername == "" {
		opts.AdminUsername = "admin"
	}
	r := &Region{
		opts:        opts,
		log:         opts.Logger,
		sink:        trace.OrNop(opts.Events),
		now:         opts.Now,
		tokens:      map[string]*token{},
		machines:    map[string]*machine{},
		macIndex:    map[string]string{},
		resources:   map[int]*resource{},
		fileIndex:   map[int]int{},
		bootSources: map[int]*bootSource{},
		config:      map[string]any{},
		seq:         map[string]int64{},
		nodeTokens:  map[string]string{},
		scriptSets:  map[int]*scriptSet{},
		sshKeys:     map[int]*sshKey{},
		powerTypes:  map[string]PowerDriver{"manual": manualPower{}},
		partials:    map[int]*blobstore.Partial{},
	}
	if r.log == nil {
		r.log = slog.Default()
	}
	if r.now == nil {
		r.now = time.Now
	}
	if r.opts.HTTPClient == nil {
		// No overall timeout (images are large), but a stream that does not answer fails.
		r.opts.HTTPClient = &http.Client{Transport: &http.Transport{
			Proxy:                 http.ProxyFromEnvironment,
			DialContext:           (&net.Dialer{Timeout: 30 * time.Second}).DialContext,
			TLSHandshakeTimeout:   30 * time.Second,
			ResponseHeaderTimeout: 60 * time.Second,
		}}
	}
	if err := os.MkdirAll(opts.StateDir, 0o755); err != nil {
		return nil, fmt.Errorf("fakemaas: state directory: %w", err)
	}
	lockPath := filepath.Join(opts.StateDir, "lock")
	lf, err := os.OpenFile(lockPath, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("fakemaas: %w", err)
	}
	if err := syscall.Flock(int(lf.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		lf.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("fakemaas: %s: %w (lock %s is held)", opts.StateDir, ErrStateInUse, lockPath)
		}
		return nil, fmt.Errorf("fakemaas: locking %s: %w", lockPath, err)
	}
	r.lockFile = lf
	fail := func(err error) (*Region, error) {
		if r.db != nil {
			r.db.Close()
		}
		lf.Close()
		return nil, err
	}
	r.db, err = bolt.Open(filepath.Join(opts.StateDir, "maas.db"), 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		return fail(fmt.Errorf("fakemaas: opening database: %w", err))
	}
	r.blobs, err = blobstore.Open(filepath.Join(opts.StateDir, "blobs"))
	if err != nil {
		return fail(fmt.Errorf("fakemaas: %w", err))
	}
	if err := r.load(); err != nil {
		return fail(err)
	}
	if err := r.loadNetwork(); err != nil {
		return fail(err)
	}
	if err := r.firstStart(); err != nil {
		return fail(err)
	}
	if err := r.writeAPIKeyFile(); err != nil {
		return fail(err)
	}
	r.ctx, r.cancel = context.WithCancel(ctx)
	if err := r.recoverUploads(ctx); err != nil {
		r.cancel()
		return fail(err)
	}
	r.bg.Add(1)
	go r.monitor()
	r.log.Info("region ready", "state", opts.StateDir, "machines", len(r.machines), "boot_resources", len(r.resources))
	return r, nil
}

// Close stops background work (an import in progress), closes partial uploads and the
// database, and releases the state directory.
func (r *Region) Close() error {
	if r.cancel != nil {
		r.cancel()
	}
	r.bg.Wait()
	r.uploadMu.Lock()
	for id, p := range r.partials {
		p.Close()
		delete(r.partials, id)
	}
	r.uploadMu.Unlock()
	var errs []error
	if r.db != nil {
		errs = append(errs, r.db.Close())
	}
	if r.lockFile != nil {
		errs = append(errs, r.lockFile.Close())
	}
	return errors.Join(errs...)
}

// AdminAPIKey returns the admin's API key, "consumer_key:token_key:token_secret".
func (r *Region) AdminAPIKey() string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.adminKey.String()
}

// APIKeyPath is where New writes the admin API key.
func (r *Region) APIKeyPath() string { return filepath.Join(r.opts.StateDir, "admin.apikey") }

// RegisterPowerType makes d carry out power actions for machines of power_type name,
// replacing any driver registered under that name.
func (r *Region) RegisterPowerType(name string, d PowerDriver) {
	r.powerMu.Lock()
	defer r.powerMu.Unlock()
	r.powerTypes[name] = d
}

func (r *Region) powerDriver(name string) (PowerDriver, bool) {
	r.powerMu.RLock()
	defer r.powerMu.RUnlock()
	d, ok := r.powerTypes[name]
	return d, ok
}

// load reads every record into memory.
func (r *Region) load() error {
	err := r.db.Update(func(tx *bolt.Tx) error {
		for _, b := range allBuckets {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("fakemaas: database: %w", err)
	}
	return r.db.View(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		if err := meta.ForEach(func(k, v []byte) error {
			switch {
			case string(k) == "admin":
				r.admin = string(v)
			case len(k) > 4 && string(k[:4]) == "seq/":
				r.seq[string(k[4:])] = int64(binary.BigEndian.Uint64(v))
			}
			return nil
		}); err != nil {
			return err
		}
		if err := tx.Bucket(bucketTokens).ForEach(func(k, v []byte) error {
			t := new(token)
			if err := json.Unmarshal(v, t); err != nil {
				return fmt.Errorf("fakemaas: token record %q: %w", k, err)
			}
			r.tokens[t.Key] = t
			if t.SystemID != "" {
				r.nodeTokens[t.SystemID] = t.Key
			}
			return nil
		}); err != nil {
			return err
		}
		if err := tx.Bucket(bucketScriptSets).ForEach(func(k, v []byte) error {
			s := new(scriptSet)
			if err := json.Unmarshal(v, s); err != nil {
				return fmt.Errorf("fakemaas: script set record %x: %w", k, err)
			}
			r.scriptSets[s.ID] = s
			return nil
		}); err != nil {
			return err
		}
		if err := tx.Bucket(bucketSSHKeys).ForEach(func(k, v []byte) error {
			key := new(sshKey)
			if err := json.Unmarshal(v, key); err != nil {
				return fmt.Errorf("fakemaas: SSH key record %x: %w", k, err)
			}
			r.sshKeys[key.ID] = key
			return nil
		}); err != nil {
			return err
		}
		if err := tx.Bucket(bucketMachines).ForEach(func(k, v []byte) error {
			m := new(machine)
			if err := json.Unmarshal(v, m); err != nil {
				return fmt.Errorf("fakemaas: machine record %q: %w", k, err)
			}
			r.machines[m.SystemID] = m
			for _, i := range m.Interfaces {
				r.macIndex[i.MAC] = m.SystemID
			}
			return nil
		}); err != nil {
			return err
		}
		if err := tx.Bucket(bucketResources).ForEach(func(k, v []byte) error {
			res := new(resource)
			if err := json.Unmarshal(v, res); err != nil {
				return fmt.Errorf("fakemaas: boot resource record %x: %w", k, err)
			}
			r.resources[res.ID] = res
			for _, s := range res.Sets {
				for _, f := range s.Files {
					r.fileIndex[f.ID] = res.ID
				}
			}
			return nil
		}); err != nil {
			return err
		}
		if err := tx.Bucket(bucketEvents).ForEach(func(k, v []byte) error {
			e := new(event)
			if err := json.Unmarshal(v, e); err != nil {
				return fmt.Errorf("fakemaas: event record %x: %w", k, err)
			}
			r.events = append(r.events, e)
			return nil
		}); err != nil {
			return err
		}
		if err := tx.Bucket(bucketBootSources).ForEach(func(k, v []byte) error {
			s := new(bootSource)
			if err := json.Unmarshal(v, s); err != nil {
				return fmt.Errorf("fakemaas: boot source record %x: %w", k, err)
			}
			r.bootSources[s.ID] = s
			return nil
		}); err != nil {
			return err
		}
		return tx.Bucket(bucketConfig).ForEach(func(k, v []byte) error {
			var val any
			if err := json.Unmarshal(v, &val); err != nil {
				return fmt.Errorf("fakemaas: config record %q: %w", k, err)
			}
			r.config[string(k)] = val
			return nil
		})
	})
}

// firstStart creates the admin user and its key, and the default boot source, once.
func (r *Region) firstStart() error {
	if r.admin != "" {
		for _, t := range r.tokens {
			if t.User == r.admin && t.SystemID == "" {
				if r.adminKey.TokenKey == "" || t.Created < r.tokens[r.adminKey.TokenKey].Created {
					r.adminKey = oauth.Credentials{ConsumerKey: t.ConsumerKey, TokenKey: t.Key, TokenSecret: t.Secret}
				}
			}
		}
		if r.adminKey.TokenKey != "" {
			return nil
		}
	}
	c := oauth.NewCredentials()
	t := &token{ConsumerKey: c.ConsumerKey, ConsumerName: "", Key: c.TokenKey, Secret: c.TokenSecret, User: r.opts.AdminUsername}
	src := &bootSource{URL: "http://images.maas.io/ephemeral-v3/stable/",
		KeyringFilename: "/usr/share/keyrings/ubuntu-cloudimage-keyring.gpg", Priority: 1,
		Created: r.now().UTC(), Updated: r.now().UTC()}
	err := r.commit(func(w *writer) error {
		w.meta("admin", []byte(r.opts.AdminUsername))
		t.Created = w.next("token")
		w.putToken(t)
		if len(r.bootSources) == 0 {
			src.ID = int(w.next("bootsource"))
			src.Selections = []*BootSourceSelection{{ID: int(w.next("selection")), OS: "ubuntu", Release: "noble",
				Arches: []string{"amd64"}, Subarches: []string{"*"}, Labels: []string{"*"}}}
			w.putBootSource(src)
		}
		return nil
	})
	if err != nil {
		return err
	}
	r.admin = r.opts.AdminUsername
	r.tokens[t.Key] = t
	r.adminKey = c
	if len(r.bootSources) == 0 {
		r.bootSources[src.ID] = src
	}
	return nil
}

func (r *Region) writeAPIKeyFile() error {
	p := r.APIKeyPath()
	want := r.adminKey.String() + "\n"
	if b, err := os.ReadFile(p); err == nil && string(b) == want {
		return os.Chmod(p, 0o600)
	}
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, []byte(want), 0o600); err != nil {
		return fmt.Errorf("fakemaas: writing API key: %w", err)
	}
	if err := os.Chmod(tmp, 0o600); err != nil {
		return fmt.Errorf("fakemaas: %w", err)
	}
	if err := os.Rename(tmp, p); err != nil {
		return fmt.Errorf("fakemaas: writing API key: %w", err)
	}
	return nil
}

// writer collects the writes of one state change; commit applies them in one bbolt
// transaction (fsynced) before the in-memory state is changed.
type writer struct {
	r      *Region
	ops    []func(tx *bolt.Tx) error
	seq    map[string]int64
	evs    []*event
	afters []func()
	// applies change in-memory state that is not a machine (tokens, script sets) once
	// the transaction is committed, still under r.mu.
	applies []func()
	// sets are the script sets created or changed, written as they are at commit time.
	sets []*scriptSet
}

// apply registers f to change in-memory state after a successful commit (r.mu held).
func (w *writer) apply(f func()) { w.applies = append(w.applies, f) }

func (w *writer) next(name string) int64 {
	if _, ok := w.seq[name]; !ok {
		w.seq[name] = w.r.seq[name]
	}
	w.seq[name]++
	return w.seq[name]
}

func (w *writer) put(bucket []byte, key []byte, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("fakemaas: encoding record: %v", err))
	}
	w.ops = append(w.ops, func(tx *bolt.Tx) error { return tx.Bucket(bucket).Put(key, b) })
}

func (w *writer) del(bucket []byte, key []byte) {
	w.ops = append(w.ops, func(tx *bolt.Tx) error { return tx.Bucket(bucket).Delete(key) })
}

func (w *writer) meta(k string, v []byte) {
	w.ops = append(w.ops, func(tx *bolt.Tx) error { return tx.Bucket(bucketMeta).Put([]byte(k), v) })
}

func itob(n int64) []byte {
	b := make([]byte, 8)
	binary.BigEndian.PutUint64(b, uint64(n))
	return b
}

func (w *writer) putToken(t *token)         { w.put(bucketTokens, []byte(t.Key), t) }
func (w *writer) delToken(key string)       { w.del(bucketTokens, []byte(key)) }
func (w *writer) putScriptSet(s *scriptSet) { w.put(bucketScriptSets, itob(int64(s.ID)), s) }
func (w *writer) delScriptSet(id int)       { w.del(bucketScriptSets, itob(int64(id))) }
func (w *writer) putSSHKey(k *sshKey)       { w.put(bucketSSHKeys, itob(int64(k.ID)), k) }
func (w *writer) delSSHKey(id int)          { w.del(bucketSSHKeys, itob(int64(id))) }

// putMachine writes m. When m's owner differs from the committed record's, the node's
// OAuth token is deleted as MAAS's clear_nodekey_when_owner_changes does.
func (w *writer) putMachine(m *machine) {
	if old := w.r.machines[m.SystemID]; old != nil && old.Owner != m.Owner {
		w.clearNodeToken(m.SystemID)
	}
	w.put(bucketMachines, []byte(m.SystemID), m)
}

func (w *writer) delMachine(sid string) {
	w.clearNodeToken(sid)
	if m := w.r.machines[sid]; m != nil {
		for _, id := range []int{m.CommissioningScriptSet, m.InstallationScriptSet} {
			if id != 0 {
				w.delScriptSet(id)
				w.apply(func() { delete(w.r.scriptSets, id) })
			}
		}
	}
	w.del(bucketMachines, []byte(sid))
}
func (w *writer) putResource(res *resource)    { w.put(bucketResources, itob(int64(res.ID)), res) }
func (w *writer) delResource(id int)           { w.del(bucketResources, itob(int64(id))) }
func (w *writer) putBootSource(s *bootSource)  { w.put(bucketBootSources, itob(int64(s.ID)), s) }
func (w *writer) delBootSource(id int)         { w.del(bucketBootSources, itob(int64(id))) }
func (w *writer) putConfig(name string, v any) { w.put(bucketConfig, []byte(name), v) }

// commit runs build to collect writes, then applies them and the sequence counters in one
// transaction. The caller changes in-memory state only after commit returns nil, and holds
// r.mu for writing while doing both (or has exclusive access, as during New).
func (r *Region) commit(build func(w *writer) error) error {
	w := &writer{r: r, seq: map[string]int64{}}
	if err := build(w); err != nil {
		return err
	}
	for _, e := range w.evs {
		w.put(bucketEvents, itob(e.ID), e)
	}
	for _, s := range w.sets {
		w.putScriptSet(s)
		w.apply(func() { r.scriptSets[s.ID] = s })
	}
	err := r.db.Update(func(tx *bolt.Tx) error {
		for name, v := range w.seq {
			if err := tx.Bucket(bucketMeta).Put([]byte("seq/"+name), itob(v)); err != nil {
				return err
			}
		}
		for _, op := range w.ops {
			if err := op(tx); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("fakemaas: saving state: %w", err)
	}
	for name, v := range w.seq {
		r.seq[name] = v
	}
	for _, f := range w.applies {
		f()
	}
	for _, e := range w.evs {
		r.events = append(r.events, e)
		r.afterCommit = append(r.afterCommit, func() { r.emitNodeEvent(e) })
	}
	r.afterCommit = append(r.afterCommit, w.afters...)
	return nil
}
