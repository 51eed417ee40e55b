// Package nodestatus holds MAAS's node statuses, their labels and the table of allowed
// transitions between them (src/maascommon/node.py, src/maasserver/node_status.py).
package nodestatus

import "fmt"

// Status is a MAAS node status number, as the API reports it in "status".
type Status int

// The statuses, with MAAS's numbers.
const (
	New                      Status = 0
	Commissioning            Status = 1
	FailedCommissioning      Status = 2
	Missing                  Status = 3
	Ready                    Status = 4
	Reserved                 Status = 5
	Deployed                 Status = 6
	Retired                  Status = 7
	Broken                   Status = 8
	Deploying                Status = 9
	Allocated                Status = 10
	FailedDeployment         Status = 11
	Releasing                Status = 12
	FailedReleasing          Status = 13
	DiskErasing              Status = 14
	FailedDiskErasing        Status = 15
	RescueMode               Status = 16
	EnteringRescueMode       Status = 17
	FailedEnteringRescueMode Status = 18
	ExitingRescueMode        Status = 19
	FailedExitingRescueMode  Status = 20
	Testing                  Status = 21
	FailedTesting            Status = 22
)

var labels = map[Status]string{
	New:                      "New",
	Commissioning:            "Commissioning",
	FailedCommissioning:      "Failed commissioning",
	Missing:                  "Missing",
	Ready:                    "Ready",
	Reserved:                 "Reserved",
	Allocated:                "Allocated",
	Deploying:                "Deploying",
	Deployed:                 "Deployed",
	Retired:                  "Retired",
	Broken:                   "Broken",
	FailedDeployment:         "Failed deployment",
	Releasing:                "Releasing",
	FailedReleasing:          "Releasing failed",
	DiskErasing:              "Disk erasing",
	FailedDiskErasing:        "Failed disk erasing",
	RescueMode:               "Rescue mode",
	EnteringRescueMode:       "Entering rescue mode",
	FailedEnteringRescueMode: "Failed to enter rescue mode",
	ExitingRescueMode:        "Exiting rescue mode",
	FailedExitingRescueMode:  "Failed to exit rescue mode",
	Testing:                  "Testing",
	FailedTesting:            "Failed testing",
}

// String returns MAAS's label ("Failed deployment"), or "Unknown".
func (s Status) String() string {
	if l, ok := labels[s]; ok {
		return l
	}
	return "Unknown"
}

// Valid reports whether s is one of MAAS's statuses.
func (s Status) Valid() bool { _, ok := labels[s]; return ok }

// Parse accepts a status label ("Ready"), a lowercase alias as the machines list filter
// takes it ("ready", "failed_deployment", "failed deployment") or a number.
func Parse(s string) (Status, bool) {
	for st, l := range labels {
		if l == s || lower(l) == lower(s) || lower(underscore(l)) == lower(s) {
			return st, true
		}
	}
	var n int
	if _, err := fmt.Sscanf(s, "%d", &n); err == nil && Status(n).Valid() && fmt.Sprint(n) == s {
		return Status(n), true
	}
	return 0, false
}

func lower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 32
		}
	}
	return string(b)
}

func underscore(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c == ' ' {
			b[i] = '_'
		}
	}
	return string(b)
}

// transitions is NODE_TRANSITIONS: from status -> statuses it may go to.
var transitions = map[Status][]Status{
	New:                 {Commissioning, Testing, Missing, Ready, Retired, Broken, EnteringRescueMode},
	Commissioning:       {FailedCommissioning, Ready, Retired, Missing, New, Broken, Testing},
	FailedCommissioning: {Commissioning, Missing, Retired, Broken, EnteringRescueMode, Testing},
	Ready:               {EnteringRescueMode, Commissioning, Allocated, Reserved, Retired, Missing, Broken, Testing},
	Reserved:            {Ready, Allocated, Retired, Missing, Broken, DiskErasing, Releasing, EnteringRescueMode, Testing},
	Allocated:           {Ready, Retired, Missing, Broken, Deploying, DiskErasing, Releasing, EnteringRescueMode, Testing},
	Releasing:           {New, Allocated, Reserved, Deployed, Ready, Broken, Missing, FailedDeployment, FailedDiskErasing, FailedReleasing},
	Deploying:           {Allocated, Missing, Broken, FailedDeployment, Deployed, Ready, DiskErasing, Releasing},
	FailedDeployment:    {Allocated, Missing, Broken, Ready, DiskErasing, Releasing, EnteringRescueMode, Testing},
	Deployed:            {Allocated, Missing, Broken, Ready, DiskErasing, Releasing, EnteringRescueMode, Testing},
	Missing:             {New, Ready, Allocated, Commissioning, Broken, EnteringRescueMode, Testing},
	Retired:             {New, Ready, Missing, Broken, EnteringRescueMode, Testing},
	Broken:              {Commissioning, Ready, DiskErasing, Releasing, EnteringRescueMode, Testing, Deployed},
	FailedReleasing:     {Releasing, DiskErasing, Ready, Broken, Testing},
	DiskErasing:         {Broken, DiskErasing, FailedDiskErasing, Ready, Releasing},
	FailedDiskErasing:   {DiskErasing, Releasing, Broken, Allocated, Ready, EnteringRescueMode, Testing},
	EnteringRescueMode:  {Ready, Broken, Deployed, RescueMode, FailedEnteringRescueMode, ExitingRescueMode},
	FailedEnteringRescueMode: {
		Broken, EnteringRescueMode, ExitingRescueMode, Testing},
	RescueMode: {Broken, ExitingRescueMode, Testing},
	ExitingRescueMode: {New, Broken, FailedCommissioning, Ready, Reserved, Allocated, FailedDeployment,
		Deployed, Missing, Retired, FailedReleasing, FailedDiskErasing, RescueMode,
		FailedEnteringRescueMode, FailedExitingRescueMode, FailedTesting},
	FailedExitingRescueMode: {Broken, ExitingRescueMode, Testing},
	// Testing may also reset to the statuses in NODE_TESTING_RESET_READY_TRANSITIONS.
	Testing: {Broken, New, Ready, Reserved, Allocated, Deployed,
		Commissioning, FailedDeployment, Missing, Retired, FailedReleasing, FailedDiskErasing,
		FailedEnteringRescueMode, FailedExitingRescueMode, FailedTesting},
	FailedTesting: {Commissioning, Broken, Missing, EnteringRescueMode, Testing, Ready, Deployed},
}

// CanTransition reports whether MAAS allows from -> to. Staying in the same status is
// always allowed.
func CanTransition(from, to Status) bool {
	if from == to {
		return true
	}
	for _, s := range transitions[from] {
		if s == to {
			return true
		}
	}
	return false
}

// TransitionError is MAAS's NodeStateViolation for a transition the table forbids.
type TransitionError struct{ From, To Status }

func (e *TransitionError) Error() string {
	return fmt.Sprintf("Invalid transition: %s -> %s.", e.From, e.To)
}

// Check returns a *TransitionError when from -> to is not allowed.
func Check(from, to Status) error {
	if CanTransition(from, to) {
		return nil
	}
	return &TransitionError{From: from, To: to}
}

// failed maps in-progress statuses to their failed status (NODE_FAILURE_STATUS_TRANSITION_MAP).
var failed = map[Status]Status{
	Commissioning:      FailedCommissioning,
	Deploying:          FailedDeployment,
	Releasing:          FailedReleasing,
	DiskErasing:        FailedDiskErasing,
	EnteringRescueMode: FailedEnteringRescueMode,
	ExitingRescueMode:  FailedExitingRescueMode,
	Testing:            FailedTesting,
}

// FailedStatus returns the failed status for an in-progress status, and false when s has
// none.
func FailedStatus(s Status) (Status, bool) {
	f, ok := failed[s]
	return f, ok
}

// IsFailed reports whether s is one of the failed statuses.
func IsFailed(s Status) bool {
	for _, f := range failed {
		if f == s {
			return true
		}
	}
	return false
}

// CommissioningLike are the statuses in which a machine boots the commissioning ephemeral
// (COMMISSIONING_LIKE_STATUSES).
func CommissioningLike(s Status) bool {
	switch s {
	case New, Commissioning, DiskErasing, EnteringRescueMode, Releasing, RescueMode, Testing:
		return true
	}
	return false
}

// Releasable are the statuses from which a machine may be released (RELEASABLE_STATUSES).
func Releasable(s Status) bool {
	switch s {
	case Allocated, Reserved, Broken, Deploying, Deployed, FailedDeployment, FailedDiskErasing, FailedReleasing:
		return true
	}
	return false
}
