package curtincfg

import (
	"strconv"
	"strings"
)

// ubuntuReleases maps Ubuntu codenames to versions (distro-info's ubuntu.csv). MAAS uses
// them to pick the network YAML version and the apt sources format.
var ubuntuReleases = map[string]string{
	"warty": "4.10", "hoary": "5.04", "breezy": "5.10", "dapper": "6.06", "edgy": "6.10",
	"feisty": "7.04", "gutsy": "7.10", "hardy": "8.04", "intrepid": "8.10", "jaunty": "9.04",
	"karmic": "9.10", "lucid": "10.04", "maverick": "10.10", "natty": "11.04",
	"oneiric": "11.10", "precise": "12.04", "quantal": "12.10", "raring": "13.04",
	"saucy": "13.10", "trusty": "14.04", "utopic": "14.10", "vivid": "15.04",
	"wily": "15.10", "xenial": "16.04", "yakkety": "16.10", "zesty": "17.04",
	"artful": "17.10", "bionic": "18.04", "cosmic": "18.10", "disco": "19.04",
	"eoan": "19.10", "focal": "20.04", "groovy": "20.10", "hirsute": "21.04",
	"impish": "21.10", "jammy": "22.04", "kinetic": "22.10", "lunar": "23.04",
	"mantic": "23.10", "noble": "24.04", "oracular": "24.10", "plucky": "25.04",
	"questing": "25.10", "resolute": "26.04",
}

// ubuntuVersion returns (year, month) for a codename or a "YY.MM" version, and whether
// it is a known release (get_release_version_from_string for a release name).
func ubuntuVersion(series string) (int, int, bool) {
	v, ok := ubuntuReleases[series]
	if !ok {
		for _, known := range ubuntuReleases {
			if known == series {
				v, ok = known, true
				break
			}
		}
	}
	if !ok {
		return 0, 0, false
	}
	y, m, _ := strings.Cut(v, ".")
	yi, _ := strconv.Atoi(y)
	mi, _ := strconv.Atoi(m)
	return yi, mi, true
}

// ubuntuAtLeast2404 is compose_preseed.get_ubuntu_version(series) >= 24.04: a series
// whose version cannot be parsed counts as 24.04 (the deb822 format).
func ubuntuAtLeast2404(series string) bool {
	v := series
	if known, ok := ubuntuReleases[series]; ok {
		v = known
	}
	y, m, ok := parseVersion(v)
	if !ok {
		return true
	}
	return y > 24 || (y == 24 && m >= 4)
}

// parseVersion accepts what Python packaging's Version would for "YY.MM"-like strings;
// anything else is invalid.
func parseVersion(v string) (int, int, bool) {
	parts := strings.Split(v, ".")
	if len(parts) == 0 || len(parts) > 3 {
		return 0, 0, false
	}
	nums := make([]int, 3)
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 {
			return 0, 0, false
		}
		nums[i] = n
	}
	return nums[0], nums[1], true
}
