package pyyaml

import (
	"fmt"
	"math"
	"math/big"
	"strconv"
	"strings"
)

// Tags PyYAML's safe loader gives plain scalars (YAML 1.1 implicit resolution).
const (
	TagStr       = "str"
	TagBool      = "bool"
	TagInt       = "int"
	TagFloat     = "float"
	TagNull      = "null"
	TagTimestamp = "timestamp"
	TagMerge     = "merge"
	TagValue     = "value"
)

// ResolvePlain returns the type yaml.safe_load gives the plain (unquoted) scalar s.
func ResolvePlain(s string) string {
	var first rune
	for _, r := range s {
		first = r
		break
	}
	for _, re := range resolversFor(first, s == "") {
		if re.MatchString(s) {
			switch re {
			case reBool:
				return TagBool
			case reFloat:
				return TagFloat
			case reInt:
				return TagInt
			case reNull:
				return TagNull
			case reTimestamp:
				return TagTimestamp
			case reMerge:
				return TagMerge
			case reValue:
				return TagValue
			}
		}
	}
	return TagStr
}

// ParsePlain converts a plain scalar to the Go value yaml.safe_load would produce:
// string, bool, int64 (or *big.Int when it does not fit), float64 or nil. Timestamps,
// merge keys and "=" are reported as errors: the documents here never need them.
func ParsePlain(s string) (any, error) {
	switch ResolvePlain(s) {
	case TagStr:
		return s, nil
	case TagNull:
		return nil, nil
	case TagBool:
		switch strings.ToLower(s) {
		case "yes", "true", "on":
			return true, nil
		default:
			return false, nil
		}
	case TagInt:
		return parseInt11(s)
	case TagFloat:
		return parseFloat11(s)
	default:
		return nil, fmt.Errorf("plain scalar %q reads as a YAML %s, which is not supported here; quote it to keep a string", s, ResolvePlain(s))
	}
}

// parseInt11 is PyYAML's construct_yaml_int.
func parseInt11(s string) (any, error) {
	v := strings.ReplaceAll(s, "_", "")
	sign := int64(1)
	if strings.HasPrefix(v, "-") {
		sign = -1
	}
	if v != "" && (v[0] == '-' || v[0] == '+') {
		v = v[1:]
	}
	n := new(big.Int)
	var ok bool
	switch {
	case v == "0":
		return int64(0), nil
	case strings.HasPrefix(v, "0b"):
		_, ok = n.SetString(v[2:], 2)
	case strings.HasPrefix(v, "0x"):
		_, ok = n.SetString(v[2:], 16)
	case v[0] == '0':
		_, ok = n.SetString(v, 8)
	case strings.Contains(v, ":"):
		ok = true
		base := big.NewInt(1)
		parts := strings.Split(v, ":")
		for i := len(parts) - 1; i >= 0; i-- {
			d, err := strconv.ParseInt(parts[i], 10, 64)
			if err != nil {
				return nil, fmt.Errorf("integer %q: %w", s, err)
			}
			n.Add(n, new(big.Int).Mul(big.NewInt(d), base))
			base.Mul(base, big.NewInt(60))
		}
	default:
		_, ok = n.SetString(v, 10)
	}
	if !ok {
		return nil, fmt.Errorf("integer %q does not parse", s)
	}
	n.Mul(n, big.NewInt(sign))
	if n.IsInt64() {
		return n.Int64(), nil
	}
	return n, nil
}

// parseFloat11 is PyYAML's construct_yaml_float.
func parseFloat11(s string) (any, error) {
	v := strings.ToLower(strings.ReplaceAll(s, "_", ""))
	sign := 1.0
	if strings.HasPrefix(v, "-") {
		sign = -1
	}
	if v != "" && (v[0] == '-' || v[0] == '+') {
		v = v[1:]
	}
	switch {
	case v == ".inf":
		return sign * math.Inf(1), nil
	case v == ".nan":
		return math.NaN(), nil
	case strings.Contains(v, ":"):
		parts := strings.Split(v, ":")
		var f, base float64 = 0, 1
		for i := len(parts) - 1; i >= 0; i-- {
			d, err := strconv.ParseFloat(parts[i], 64)
			if err != nil {
				return nil, fmt.Errorf("float %q: %w", s, err)
			}
			f += d * base
			base *= 60
		}
		return sign * f, nil
	default:
		f, err := strconv.ParseFloat(v, 64)
		if err != nil {
			return nil, fmt.Errorf("float %q: %w", s, err)
		}
		return sign * f, nil
	}
}

// pyFloatRepr is PyYAML's represent_float: Python's repr, lowercased, with ".0" added
// to a mantissa without a point ("1e+16" becomes "1.0e+16").
func pyFloatRepr(f float64) string {
	switch {
	case math.IsNaN(f):
		return ".nan"
	case math.IsInf(f, 1):
		return ".inf"
	case math.IsInf(f, -1):
		return "-.inf"
	}
	e := strconv.FormatFloat(f, 'e', -1, 64) // shortest round-trip digits: [-]d[.ddd]e±XX
	neg := strings.HasPrefix(e, "-")
	e = strings.TrimPrefix(e, "-")
	mant, expStr, _ := strings.Cut(e, "e")
	exp, _ := strconv.Atoi(expStr)
	digits := strings.Replace(mant, ".", "", 1)
	var out string
	if exp >= -4 && exp < 16 {
		if exp >= 0 {
			if len(digits) <= exp+1 {
				out = digits + strings.Repeat("0", exp+1-len(digits)) + ".0"
			} else {
				out = digits[:exp+1] + "." + digits[exp+1:]
			}
		} else {
			out = "0." + strings.Repeat("0", -exp-1) + digits
		}
	} else {
		m := digits[:1]
		if len(digits) > 1 {
			m += "." + digits[1:]
		} else {
			m += ".0" // PyYAML's fix-up of Python's "1e+16"
		}
		sign := "+"
		if exp < 0 {
			sign, exp = "-", -exp
		}
		out = fmt.Sprintf("%se%s%02d", m, sign, exp)
	}
	if neg {
		out = "-" + out
	}
	return out
}
