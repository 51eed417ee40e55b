package nodestatus

import "testing"

func TestStatuses(t *testing.T) {
	cases := []struct {
		s     Status
		num   int
		label string
	}{
		{New, 0, "New"}, {Ready, 4, "Ready"}, {Deployed, 6, "Deployed"}, {Deploying, 9, "Deploying"},
		{Allocated, 10, "Allocated"}, {FailedDeployment, 11, "Failed deployment"}, {FailedReleasing, 13, "Releasing failed"},
		{FailedTesting, 22, "Failed testing"}, {Status(99), 99, "Unknown"},
	}
	for _, c := range cases {
		if int(c.s) != c.num || c.s.String() != c.label {
			t.Errorf("%d: %q, want %d %q", int(c.s), c.s.String(), c.num, c.label)
		}
	}
	for _, in := range []string{"Failed deployment", "failed_deployment", "failed deployment", "11"} {
		if s, ok := Parse(in); !ok || s != FailedDeployment {
			t.Errorf("Parse(%q) = %v, %v", in, s, ok)
		}
	}
	if _, ok := Parse("nosuch"); ok {
		t.Error("Parse(nosuch) succeeded")
	}
}

func TestTransitions(t *testing.T) {
	cases := []struct {
		from, to Status
		ok       bool
	}{
		{New, Ready, true}, {New, Deploying, false}, {Ready, Allocated, true}, {Ready, Deploying, false},
		{Allocated, Deploying, true}, {Deploying, Deployed, true}, {Deploying, FailedDeployment, true},
		{Deployed, Deploying, false}, {FailedDeployment, Allocated, true}, {Broken, Ready, true},
		{Broken, Allocated, false}, {Ready, Ready, true},
	}
	for _, c := range cases {
		err := Check(c.from, c.to)
		if (err == nil) != c.ok {
			t.Errorf("%s -> %s: %v, want ok=%v", c.from, c.to, err, c.ok)
		}
		if err != nil && err.Error() != "Invalid transition: "+c.from.String()+" -> "+c.to.String()+"." {
			t.Errorf("message %q", err)
		}
	}
	if f, ok := FailedStatus(Deploying); !ok || f != FailedDeployment {
		t.Errorf("FailedStatus(Deploying) = %v", f)
	}
	if !IsFailed(FailedCommissioning) || IsFailed(Ready) {
		t.Error("IsFailed")
	}
}
