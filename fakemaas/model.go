package fakemaas

import (
	"encoding/json"
	"time"

	"github.com/maasemu/maasemu/fakemaas/nodestatus"
)

// Boot resource types, as MAAS numbers them (BootResourceType).
const (
	rtypeSynced   = 0
	rtypeUploaded = 2
)

var rtypeNames = map[int]string{rtypeSynced: "Synced", rtypeUploaded: "Uploaded"}

// token is one OAuth token: an API key of a user, or (next issue) a node's key.
type token struct {
	ConsumerKey  string `json:"consumer_key"`
	ConsumerName string `json:"consumer_name"`
	Key          string `json:"key"`
	Secret       string `json:"secret"`
	User         string `json:"user"`
	SystemID     string `json:"system_id,omitempty"` // node tokens
	Created      int64  `json:"created"`             // ordering
}

// Interface is a machine network interface.
type Interface struct {
	ID   int    `json:"id"`
	Name string `json:"name"`
	MAC  string `json:"mac"`
}

// BlockDevice is a machine disk.
type BlockDevice struct {
	ID        int    `json:"id"`
	Name      string `json:"name"`
	Model     string `json:"model,omitempty"`
	Serial    string `json:"serial,omitempty"`
	IDPath    string `json:"id_path,omitempty"`
	Size      int64  `json:"size"`
	BlockSize int    `json:"block_size"`
}

// machine is the region's record of one machine.
type machine struct {
	SystemID         string            `json:"system_id"`
	Hostname         string            `json:"hostname"`
	Domain           string            `json:"domain"`
	Description      string            `json:"description,omitempty"`
	Architecture     string            `json:"architecture"`
	MinHWEKernel     string            `json:"min_hwe_kernel,omitempty"`
	HWEKernel        string            `json:"hwe_kernel,omitempty"`
	Status           nodestatus.Status `json:"status"`
	PreviousStatus   nodestatus.Status `json:"previous_status"`
	ErrorDescription string            `json:"error_description,omitempty"`
	OSystem          string            `json:"osystem,omitempty"`
	DistroSeries     string            `json:"distro_series,omitempty"`
	Owner            string            `json:"owner,omitempty"`
	AgentName        string            `json:"agent_name,omitempty"`
	PowerType        string            `json:"power_type"`
	PowerParams      map[string]string `json:"power_params,omitempty"`
	PowerState       string            `json:"power_state"`
	Netboot          bool              `json:"netboot"`
	EphemeralDeploy  bool              `json:"ephemeral_deploy,omitempty"`
	UserData         []byte            `json:"user_data,omitempty"`
	Interfaces       []Interface       `json:"interfaces"`
	BootMAC          string            `json:"boot_mac,omitempty"`
	BlockDevices     []BlockDevice     `json:"block_devices,omitempty"`
	CPUCount         int               `json:"cpu_count,omitempty"`
	Memory           int64             `json:"memory,omitempty"` // MiB
	Zone             string            `json:"zone"`
	Pool             string            `json:"pool"`
	Tags             []string          `json:"tags,omitempty"`
	HardwareUUID     string            `json:"hardware_uuid,omitempty"`
	BootClusterIP    string            `json:"boot_cluster_ip,omitempty"`
	BiosBootMethod   string            `json:"bios_boot_method,omitempty"`
	Locked           bool              `json:"locked,omitempty"`
	StatusExpires    time.Time         `json:"status_expires,omitzero"`
	Created          time.Time         `json:"created"`
	Updated          time.Time         `json:"updated"`
	// Last INFO-or-higher event, for status_message / status_action.
	StatusEventType   string `json:"status_event_type,omitempty"`
	StatusEventDesc   string `json:"status_event_desc,omitempty"`
	StatusEventAction string `json:"status_event_action,omitempty"`
}

func (m *machine) clone() *machine {
	b, err := json.Marshal(m)
	if err != nil {
		panic(err)
	}
	c := new(machine)
	if err := json.Unmarshal(b, c); err != nil {
		panic(err)
	}
	return c
}

// event is one entry of a node's MAAS event log.
type event struct {
	ID          int64     `json:"id"`
	SystemID    string    `json:"node"`
	Hostname    string    `json:"hostname"`
	Type        string    `json:"type"`      // event type name, e.g. NODE_CHANGED_STATUS
	TypeDesc    string    `json:"type_desc"` // "Node changed status"
	Level       int       `json:"level"`     // python logging level
	Description string    `json:"description"`
	Action      string    `json:"action,omitempty"`
	User        string    `json:"user,omitempty"`
	Created     time.Time `json:"created"`
}

// resourceFile is a file of a boot resource set.
type resourceFile struct {
	ID             int    `json:"id"`
	Filename       string `json:"filename"`
	Filetype       string `json:"filetype"`
	SHA256         string `json:"sha256"`
	FilenameOnDisk string `json:"filename_on_disk"`
	Size           int64  `json:"size"`
	Uploaded       int64  `json:"uploaded"` // bytes acknowledged so far (uploads)
	Complete       bool   `json:"complete"`
}

type resourceSet struct {
	ID      int             `json:"id"`
	Version string          `json:"version"`
	Label   string          `json:"label"`
	Files   []*resourceFile `json:"files"`
}

func (s *resourceSet) totalSize() int64 {
	var n int64
	for _, f := range s.Files {
		n += f.Size
	}
	return n
}

func (s *resourceSet) complete() bool {
	if len(s.Files) == 0 {
		return false
	}
	for _, f := range s.Files {
		if !f.Complete {
			return false
		}
	}
	return true
}

func (s *resourceSet) progress() float64 {
	var done, total int64
	for _, f := range s.Files {
		total += f.Size
		if f.Complete {
			done += f.Size
		} else {
			done += f.Uploaded
		}
	}
	if total == 0 {
		return 0
	}
	return 100 * float64(done) / float64(total)
}

func (s *resourceSet) file(filetype string) *resourceFile {
	for _, f := range s.Files {
		if f.Filetype == filetype {
			return f
		}
	}
	return nil
}

// resource is a BootResource with its sets.
type resource struct {
	ID             int               `json:"id"`
	Type           int               `json:"rtype"`
	Name           string            `json:"name"`
	Architecture   string            `json:"architecture"`
	BaseImage      string            `json:"base_image,omitempty"`
	BootloaderType string            `json:"bootloader_type,omitempty"`
	Extra          map[string]string `json:"extra,omitempty"`
	Sets           []*resourceSet    `json:"sets"`
	LastDeployed   *time.Time        `json:"last_deployed,omitempty"`
}

func (r *resource) clone() *resource {
	b, err := json.Marshal(r)
	if err != nil {
		panic(err)
	}
	c := new(resource)
	if err := json.Unmarshal(b, c); err != nil {
		panic(err)
	}
	return c
}

// latestComplete returns the newest set whose files are all complete, or nil.
func (r *resource) latestComplete() *resourceSet {
	for i := len(r.Sets) - 1; i >= 0; i-- {
		if r.Sets[i].complete() {
			return r.Sets[i]
		}
	}
	return nil
}

func (r *resource) arch() (arch, subarch string) {
	a, s, _ := cut(r.Architecture, "/")
	return a, s
}

// BootSourceSelection is one selection of a boot source.
type BootSourceSelection struct {
	ID        int      `json:"id"`
	OS        string   `json:"os"`
	Release   string   `json:"release"`
	Arches    []string `json:"arches"`
	Subarches []string `json:"subarches"`
	Labels    []string `json:"labels"`
}

// bootSource is a SimpleStreams source op=import reads.
type bootSource struct {
	ID              int                    `json:"id"`
	URL             string                 `json:"url"`
	KeyringFilename string                 `json:"keyring_filename"`
	KeyringData     string                 `json:"keyring_data"`
	Priority        int                    `json:"priority"`
	SkipKeyring     bool                   `json:"skip_keyring_verification"`
	Selections      []*BootSourceSelection `json:"selections"`
	Created         time.Time              `json:"created"`
	Updated         time.Time              `json:"updated"`
}

func cut(s, sep string) (string, string, bool) {
	for i := 0; i+len(sep) <= len(s); i++ {
		if s[i:i+len(sep)] == sep {
			return s[:i], s[i+len(sep):], true
		}
	}
	return s, "", false
}
