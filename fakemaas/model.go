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

// token is one OAuth token: an API key of a user, or a node's key (NodeKey: SystemID set,
// user maas-init-node, created on demand, deleted when the node's owner changes).
type token struct {
	ConsumerKey  string `json:"consumer_key"`
	ConsumerName string `json:"consumer_name"`
	Key          string `json:"key"`
	Secret       string `json:"secret"`
	User         string `json:"user"`
	SystemID     string `json:"system_id,omitempty"` // node tokens
	Created      int64  `json:"created"`             // ordering
}

// Interface types (INTERFACE_TYPE).
const (
	ifacePhysical = "physical"
	ifaceBond     = "bond"
	ifaceVLAN     = "vlan"
	ifaceBridge   = "bridge"
)

// Interface is a machine network interface: physical, or a bond, VLAN or bridge on
// other interfaces of the machine.
type Interface struct {
	ID   int    `json:"id"`
	Name string `json:"name"`
	// Type is physical (also when empty), bond, vlan or bridge.
	Type string `json:"type,omitempty"`
	// MAC is the interface's MAC address; a VLAN interface has its parent's.
	MAC string `json:"mac"`
	// VLAN is the id of the VLAN the interface is connected to; 0 is none (MAAS's
	// disconnected interface, vlan=None).
	VLAN int `json:"vlan,omitempty"`
	// Parents are the ids of a bond's, bridge's or VLAN interface's parents.
	Parents []int `json:"parents,omitempty"`
	// Params are MAAS's interface params: mtu, accept-ra, bond_* and bridge_*.
	Params map[string]any `json:"params,omitempty"`
	// Links are the interface's subnet links (MAAS's StaticIPAddress rows).
	Links []Link `json:"links,omitempty"`
	// Discovered are the addresses commissioning saw on the interface, in CIDR form.
	Discovered   []string `json:"discovered,omitempty"`
	Disabled     bool     `json:"disabled,omitempty"`
	Disconnected bool     `json:"disconnected,omitempty"` // link_connected=false
	// Acquired marks a bridge made while the machine was allocated: it goes at release.
	Acquired  bool `json:"acquired,omitempty"`
	LinkSpeed int  `json:"link_speed,omitempty"`
	// InterfaceSpeed is the interface's maximum speed in Mbit/s.
	InterfaceSpeed int      `json:"interface_speed,omitempty"`
	Vendor         string   `json:"vendor,omitempty"`
	Product        string   `json:"product,omitempty"`
	Tags           []string `json:"tags,omitempty"`
	// LegacyLinkMode is how records written before the network model configured the
	// interface ("dhcp", "link_up", "none"); loadNetwork turns it into Links.
	LegacyLinkMode string `json:"link_mode,omitempty"`
}

func (i *Interface) kind() string {
	if i.Type == "" {
		return ifacePhysical
	}
	return i.Type
}

// Link modes (INTERFACE_LINK_TYPE).
const (
	linkAuto   = "auto"
	linkDHCP   = "dhcp"
	linkStatic = "static"
	linkUp     = "link_up"
)

// Link is one link of an interface to a subnet, MAAS's StaticIPAddress: its id is the
// link id the API shows.
type Link struct {
	ID     int    `json:"id"`
	Mode   string `json:"mode"`             // auto, dhcp, static, link_up
	Subnet int    `json:"subnet,omitempty"` // subnet id; 0 for none (dhcp, link_up)
	IP     string `json:"ip,omitempty"`     // static; auto once claimed at deployment
}

// allocType is the link's IPADDRESS_TYPE.
func (l Link) allocType() int {
	switch l.Mode {
	case linkAuto:
		return allocAuto
	case linkDHCP:
		return allocDHCP
	}
	return allocSticky
}

// BlockDevice is a machine disk.
type BlockDevice struct {
	ID              int      `json:"id"`
	Name            string   `json:"name"`
	Model           string   `json:"model,omitempty"`
	Serial          string   `json:"serial,omitempty"`
	IDPath          string   `json:"id_path,omitempty"`
	Size            int64    `json:"size"`
	BlockSize       int      `json:"block_size"`
	Tags            []string `json:"tags,omitempty"`
	FirmwareVersion string   `json:"firmware_version,omitempty"`
}

// storageLayout is the storage layout applied to a machine (set_storage_layout, or the
// default layout at the end of commissioning); curtincfg renders it. Layout "" means
// none is applied.
type storageLayout struct {
	Layout     string `json:"layout,omitempty"` // flat, lvm, custom, blank
	BootSize   int64  `json:"boot_size,omitempty"`
	RootSize   int64  `json:"root_size,omitempty"`
	RootDevice string `json:"root_device,omitempty"`
	VGName     string `json:"vg_name,omitempty"`
	LVName     string `json:"lv_name,omitempty"`
	LVSize     int64  `json:"lv_size,omitempty"`
	Custom     string `json:"custom,omitempty"` // curtin storage YAML (layout custom)
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
	// NetModel is 1 for records written with the network model (0: migrate on load).
	NetModel       int           `json:"net_model,omitempty"`
	BootMAC        string        `json:"boot_mac,omitempty"`
	BlockDevices   []BlockDevice `json:"block_devices,omitempty"`
	CPUCount       int           `json:"cpu_count,omitempty"`
	Memory         int64         `json:"memory,omitempty"` // MiB
	Zone           string        `json:"zone"`
	Pool           string        `json:"pool"`
	Tags           []string      `json:"tags,omitempty"`
	HardwareUUID   string        `json:"hardware_uuid,omitempty"`
	BootClusterIP  string        `json:"boot_cluster_ip,omitempty"`
	BiosBootMethod string        `json:"bios_boot_method,omitempty"`
	Locked         bool          `json:"locked,omitempty"`
	StatusExpires  time.Time     `json:"status_expires,omitzero"`
	Storage        storageLayout `json:"storage,omitzero"`
	CPUSpeed       int           `json:"cpu_speed,omitempty"`
	CPUModel       string        `json:"cpu_model,omitempty"`
	EnableSSH      bool          `json:"enable_ssh,omitempty"`
	SkipStorage    bool          `json:"skip_storage,omitempty"`
	SkipNetworking bool          `json:"skip_networking,omitempty"`
	// Script sets (ScriptSet ids; 0 when none).
	CommissioningScriptSet int `json:"commissioning_script_set,omitempty"`
	InstallationScriptSet  int `json:"installation_script_set,omitempty"`
	// NetbootFinished records cloud-init's modules-final success while Deploying (MAAS's
	// Temporal signal netboot-finished).
	NetbootFinished bool `json:"netboot_finished,omitempty"`
	// DeployedImage is the boot resource the current deployment installs (0: none).
	DeployedImage int       `json:"deployed_image,omitempty"`
	Created       time.Time `json:"created"`
	Updated       time.Time `json:"updated"`
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
	// Deployments counts machines that reached Deployed with this resource.
	Deployments int `json:"deployments,omitempty"`
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

// Script result statuses (SCRIPT_STATUS, maascommon/enums/scriptresult.py).
const (
	scriptPending               = 0
	scriptRunning               = 1
	scriptPassed                = 2
	scriptFailed                = 3
	scriptTimedOut              = 4
	scriptAborted               = 5
	scriptDegraded              = 6
	scriptInstalling            = 7
	scriptFailedInstalling      = 8
	scriptSkipped               = 9
	scriptApplyingNetconf       = 10
	scriptFailedApplyingNetconf = 11
)

var scriptStatusNames = map[int]string{scriptPending: "Pending", scriptRunning: "Running", scriptPassed: "Passed",
	scriptFailed: "Failed", scriptTimedOut: "Timed out", scriptAborted: "Aborted", scriptDegraded: "Degraded",
	scriptInstalling: "Installing dependencies", scriptFailedInstalling: "Failed installing dependencies",
	scriptSkipped: "Skipped", scriptApplyingNetconf: "Applying custom network configuration",
	scriptFailedApplyingNetconf: "Failed to apply custom network configuration"}

func runningOrPending(st int) bool {
	return st == scriptPending || st == scriptRunning || st == scriptInstalling || st == scriptApplyingNetconf
}

// Result types of script sets (RESULT_TYPE).
const (
	resultCommissioning = 0
	resultInstallation  = 1
	resultTesting       = 2
	resultRelease       = 3
)

var resultTypeNames = map[int]string{resultCommissioning: "Commissioning", resultInstallation: "Installation",
	resultTesting: "Testing", resultRelease: "Release"}

// scriptResult is one ScriptResult: a script's (or an uploaded file's) status and output.
type scriptResult struct {
	ID         int        `json:"id"`
	Name       string     `json:"name"`
	Status     int        `json:"status"`
	ExitStatus *int       `json:"exit_status,omitempty"`
	Output     []byte     `json:"output,omitempty"`
	Stdout     []byte     `json:"stdout,omitempty"`
	Stderr     []byte     `json:"stderr,omitempty"`
	Result     []byte     `json:"result,omitempty"`
	Runtime    float64    `json:"runtime,omitempty"`
	Started    *time.Time `json:"started,omitempty"`
	Ended      *time.Time `json:"ended,omitempty"`
	Created    time.Time  `json:"created"`
	Updated    time.Time  `json:"updated"`
}

// scriptSet is one ScriptSet of a node.
type scriptSet struct {
	ID         int             `json:"id"`
	SystemID   string          `json:"system_id"`
	ResultType int             `json:"result_type"`
	Results    []*scriptResult `json:"results"`
	LastPing   *time.Time      `json:"last_ping,omitempty"`
	Created    time.Time       `json:"created"`
}

func (s *scriptSet) clone() *scriptSet {
	b, err := json.Marshal(s)
	if err != nil {
		panic(err)
	}
	c := new(scriptSet)
	if err := json.Unmarshal(b, c); err != nil {
		panic(err)
	}
	return c
}

func (s *scriptSet) result(name string) *scriptResult {
	for _, r := range s.Results {
		if r.Name == name {
			return r
		}
	}
	return nil
}

// status is ScriptSet.status: the aggregate of its results.
func (s *scriptSet) status() int {
	st := scriptPassed
	anyRunning, anyPending, anyFailed := false, false, false
	for _, r := range s.Results {
		switch {
		case r.Status == scriptPending:
			anyPending = true
		case runningOrPending(r.Status):
			anyRunning = true
		case r.Status == scriptFailed || r.Status == scriptTimedOut || r.Status == scriptFailedInstalling ||
			r.Status == scriptFailedApplyingNetconf || r.Status == scriptAborted:
			anyFailed = true
		}
	}
	switch {
	case anyRunning:
		st = scriptRunning
	case anyPending:
		st = scriptPending
	case anyFailed:
		st = scriptFailed
	}
	return st
}

// sshKey is a user's public SSH key.
type sshKey struct {
	ID      int       `json:"id"`
	User    string    `json:"user"`
	Key     string    `json:"key"`
	Created time.Time `json:"created"`
}
