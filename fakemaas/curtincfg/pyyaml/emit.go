package pyyaml

import (
	"fmt"
	"math/big"
	"reflect"
	"regexp"
	"strconv"
	"strings"
)

// The emission rules below follow PyYAML's Emitter, Serializer and Resolver as observed
// through yaml.safe_dump (PyYAML 5.1 to 6.x): default_flow_style=False, indent 2, width
// 80, allow_unicode False, sort_keys True, implicit document start and end.

const (
	bestIndent = 2
	bestWidth  = 80
)

// Dump renders v as one YAML document, as yaml.safe_dump(v) would. Supported values:
// nil, bool, signed and unsigned integers, *big.Int, float64, string, []any, []string,
// *Map and map[string]any (emitted with sorted keys). Anything else is an error naming
// the type.
func Dump(v any) (string, error) {
	e := &emitter{indent: -1, whitespace: true, indention: true}
	if err := e.node(v, ctx{root: true}); err != nil {
		return "", err
	}
	// Document end: a line break, then "..." when a root plain scalar left the
	// document open-ended (yaml.safe_dump("x") == "x\n...\n").
	e.writeIndent()
	if e.openEnded {
		e.writeIndicator("...", true, false, false)
		e.writeIndent()
	}
	return e.b.String(), nil
}

// MustDump is Dump for values built in code, where an unsupported type is a bug.
func MustDump(v any) string {
	s, err := Dump(v)
	if err != nil {
		panic(err)
	}
	return s
}

type ctx struct {
	root, sequence, mapping, simpleKey bool
}

type emitter struct {
	b          strings.Builder
	indent     int // -1: none yet
	indents    []int
	flowLevel  int
	column     int
	whitespace bool // the last character written was whitespace
	indention  bool // only indentation (spaces, '-', '?', ':') on this line so far
	openEnded  bool
}

func (e *emitter) increaseIndent(flow, indentless bool) {
	e.indents = append(e.indents, e.indent)
	switch {
	case e.indent < 0 && flow:
		e.indent = bestIndent
	case e.indent < 0:
		e.indent = 0
	case !indentless:
		e.indent += bestIndent
	}
}

func (e *emitter) popIndent() {
	e.indent = e.indents[len(e.indents)-1]
	e.indents = e.indents[:len(e.indents)-1]
}

func (e *emitter) node(v any, c ctx) error {
	switch x := v.(type) {
	case nil:
		e.scalar("null", false, c)
	case bool:
		if x {
			e.scalar("true", false, c)
		} else {
			e.scalar("false", false, c)
		}
	case int:
		e.scalar(strconv.FormatInt(int64(x), 10), false, c)
	case int64:
		e.scalar(strconv.FormatInt(x, 10), false, c)
	case int32:
		e.scalar(strconv.FormatInt(int64(x), 10), false, c)
	case uint:
		e.scalar(strconv.FormatUint(uint64(x), 10), false, c)
	case uint64:
		e.scalar(strconv.FormatUint(x, 10), false, c)
	case uint32:
		e.scalar(strconv.FormatUint(uint64(x), 10), false, c)
	case float64:
		e.scalar(pyFloatRepr(x), false, c)
	case *big.Int:
		e.scalar(x.String(), false, c)
	case string:
		e.scalar(x, true, c)
	case []any:
		return e.sequence(x, c)
	case []string:
		return e.sequence(Strings(x), c)
	case *Map:
		if x == nil {
			e.scalar("null", false, c)
			return nil
		}
		return e.mapping(x, c)
	case map[string]any:
		m := NewMap()
		for k, val := range x {
			m.Set(k, val)
		}
		return e.mapping(m, c)
	default:
		return fmt.Errorf("pyyaml: cannot represent a value of type %s", reflect.TypeOf(v))
	}
	return nil
}

func (e *emitter) sequence(items []any, c ctx) error {
	if len(items) == 0 {
		e.emptyFlow("[", "]")
		return nil
	}
	e.increaseIndent(false, c.mapping && !e.indention)
	for _, it := range items {
		e.writeIndent()
		e.writeIndicator("-", true, false, true)
		if err := e.node(it, ctx{sequence: true}); err != nil {
			return err
		}
	}
	e.popIndent()
	return nil
}

func (e *emitter) mapping(m *Map, _ ctx) error {
	if m.Len() == 0 {
		e.emptyFlow("{", "}")
		return nil
	}
	e.increaseIndent(false, false)
	for _, k := range m.Keys() {
		v, _ := m.Get(k)
		e.writeIndent()
		a := analyze(k)
		// PyYAML counts the prepared tag ("!!str", 5 characters) into the 128 limit of
		// a simple key even though the tag is not written.
		if len("!!str")+len([]rune(k)) < 128 && !a.empty && !a.multiline {
			e.scalar(k, true, ctx{mapping: true, simpleKey: true})
			e.writeIndicator(":", false, false, false)
		} else {
			e.writeIndicator("?", true, false, true)
			e.scalar(k, true, ctx{mapping: true})
			e.writeIndent()
			e.writeIndicator(":", true, false, true)
		}
		if err := e.node(v, ctx{mapping: true}); err != nil {
			return err
		}
	}
	e.popIndent()
	return nil
}

func (e *emitter) emptyFlow(open, closing string) {
	e.writeIndicator(open, true, true, false)
	e.flowLevel++
	e.increaseIndent(true, false)
	e.popIndent()
	e.flowLevel--
	e.writeIndicator(closing, false, false, false)
}

// scalar writes a scalar. isStr says it represents a Python str, which may not be written
// plain when a plain reading would resolve to another type (bool, int, float, null,
// timestamp, merge, value).
func (e *emitter) scalar(value string, isStr bool, c ctx) {
	a := analyze(value)
	implicitPlain := !isStr || resolvesToStr(value)
	style := e.chooseStyle(a, implicitPlain, c.simpleKey)
	e.increaseIndent(true, false)
	split := !c.simpleKey
	text := []rune(value)
	switch style {
	case '"':
		e.writeDoubleQuoted(text, split)
	case '\'':
		e.writeSingleQuoted(text, split)
	default:
		if c.root {
			e.openEnded = true
		}
		e.writePlain(text, split)
	}
	e.popIndent()
}

func (e *emitter) chooseStyle(a analysis, implicitPlain, simpleKey bool) rune {
	if implicitPlain {
		if !(simpleKey && (a.empty || a.multiline)) &&
			((e.flowLevel > 0 && a.allowFlowPlain) || (e.flowLevel == 0 && a.allowBlockPlain)) {
			return 0
		}
	}
	if a.allowSingleQuoted && !(simpleKey && a.multiline) {
		return '\''
	}
	return '"'
}

func (e *emitter) write(s string, runes int) {
	e.b.WriteString(s)
	e.column += runes
}

func (e *emitter) writeIndicator(ind string, needWhitespace, whitespace, indention bool) {
	data := ind
	if !e.whitespace && needWhitespace {
		data = " " + ind
	}
	e.whitespace = whitespace
	e.indention = e.indention && indention
	e.openEnded = false
	e.write(data, len([]rune(data)))
}

func (e *emitter) writeIndent() {
	indent := max(e.indent, 0)
	if !e.indention || e.column > indent || (e.column == indent && !e.whitespace) {
		e.writeLineBreak("\n")
	}
	if e.column < indent {
		e.whitespace = true
		n := indent - e.column
		e.write(strings.Repeat(" ", n), n)
	}
}

func (e *emitter) writeLineBreak(br string) {
	e.whitespace = true
	e.indention = true
	e.b.WriteString(br)
	e.column = 0
}

func isBreak(r rune) bool { return r == '\n' || r == '\u0085' || r == '\u2028' || r == '\u2029' }

func isSpaceOrBreakOrNul(r rune) bool {
	return r == 0 || r == ' ' || r == '\t' || r == '\r' || isBreak(r)
}

func (e *emitter) writeRunes(rs []rune) { e.write(string(rs), len(rs)) }

func (e *emitter) writeBreaks(rs []rune) {
	for _, br := range rs {
		if br == '\n' {
			e.writeLineBreak("\n")
		} else {
			e.writeLineBreak(string(br))
		}
	}
}

func (e *emitter) writePlain(text []rune, split bool) {
	if len(text) == 0 {
		return
	}
	if !e.whitespace {
		e.write(" ", 1)
	}
	e.whitespace = false
	e.indention = false
	spaces, breaks := false, false
	start := 0
	for end := 0; end <= len(text); end++ {
		var ch rune = -1
		if end < len(text) {
			ch = text[end]
		}
		switch {
		case spaces:
			if ch != ' ' {
				if start+1 == end && e.column > bestWidth && split {
					e.writeIndent()
					e.whitespace = false
					e.indention = false
				} else {
					e.writeRunes(text[start:end])
				}
				start = end
			}
		case breaks:
			if !isBreak(ch) {
				if text[start] == '\n' {
					e.writeLineBreak("\n")
				}
				e.writeBreaks(text[start:end])
				e.writeIndent()
				e.whitespace = false
				e.indention = false
				start = end
			}
		default:
			if ch == -1 || ch == ' ' || isBreak(ch) {
				e.writeRunes(text[start:end])
				start = end
			}
		}
		if ch != -1 {
			spaces = ch == ' '
			breaks = isBreak(ch)
		}
	}
}

func (e *emitter) writeSingleQuoted(text []rune, split bool) {
	e.writeIndicator("'", true, false, false)
	spaces, breaks := false, false
	start := 0
	for end := 0; end <= len(text); end++ {
		var ch rune = -1
		if end < len(text) {
			ch = text[end]
		}
		switch {
		case spaces:
			if ch != ' ' {
				if start+1 == end && e.column > bestWidth && split && start != 0 && end != len(text) {
					e.writeIndent()
				} else {
					e.writeRunes(text[start:end])
				}
				start = end
			}
		case breaks:
			if ch == -1 || !isBreak(ch) {
				if text[start] == '\n' {
					e.writeLineBreak("\n")
				}
				e.writeBreaks(text[start:end])
				e.writeIndent()
				start = end
			}
		default:
			if ch == -1 || ch == ' ' || isBreak(ch) || ch == '\'' {
				if start < end {
					e.writeRunes(text[start:end])
					start = end
				}
			}
		}
		if ch == '\'' {
			e.write("''", 2)
			start = end + 1
		}
		if ch != -1 {
			spaces = ch == ' '
			breaks = isBreak(ch)
		}
	}
	e.writeIndicator("'", false, false, false)
}

var escapeReplacements = map[rune]string{
	0: "0", '\x07': "a", '\x08': "b", '\x09': "t", '\x0A': "n", '\x0B': "v", '\x0C': "f",
	'\x0D': "r", '\x1B': "e", '"': "\"", '\\': "\\", '\u0085': "N", '\u00A0': "_",
	'\u2028': "L", '\u2029': "P",
}

func (e *emitter) writeDoubleQuoted(text []rune, split bool) {
	e.writeIndicator("\"", true, false, false)
	start := 0
	for end := 0; end <= len(text); end++ {
		var ch rune = -1
		if end < len(text) {
			ch = text[end]
		}
		if ch == -1 || ch == '"' || ch == '\\' || ch == '\u0085' || ch == '\u2028' || ch == '\u2029' ||
			ch == '\uFEFF' || !(ch >= 0x20 && ch <= 0x7E) {
			if start < end {
				e.writeRunes(text[start:end])
				start = end
			}
			if ch != -1 {
				var data string
				if r, ok := escapeReplacements[ch]; ok {
					data = "\\" + r
				} else if ch <= 0xFF {
					data = fmt.Sprintf("\\x%02X", ch)
				} else if ch <= 0xFFFF {
					data = fmt.Sprintf("\\u%04X", ch)
				} else {
					data = fmt.Sprintf("\\U%08X", ch)
				}
				e.write(data, len(data))
				start = end + 1
			}
		}
		if end > 0 && end < len(text)-1 && (ch == ' ' || start >= end) &&
			e.column+(end-start) > bestWidth && split {
			data, n := "\\", 1
			if start < end {
				data, n = string(text[start:end])+"\\", end-start+1
			}
			if start < end {
				start = end
			}
			e.write(data, n)
			e.writeIndent()
			e.whitespace = false
			e.indention = false
			if text[start] == ' ' {
				e.write("\\", 1)
			}
		}
	}
	e.writeIndicator("\"", false, false, false)
}

type analysis struct {
	empty, multiline                   bool
	allowFlowPlain, allowBlockPlain    bool
	allowSingleQuoted, allowBlockStyle bool
}

func analyze(s string) analysis {
	if s == "" {
		return analysis{empty: true, allowBlockPlain: true, allowSingleQuoted: true}
	}
	text := []rune(s)
	var blockInd, flowInd, lineBreaks, special bool
	var leadingSpace, leadingBreak, trailingSpace, trailingBreak, breakSpace, spaceBreak bool
	if strings.HasPrefix(s, "---") || strings.HasPrefix(s, "...") {
		blockInd, flowInd = true, true
	}
	precededByWS := true
	followedByWS := len(text) == 1 || isSpaceOrBreakOrNul(text[1])
	prevSpace, prevBreak := false, false
	for i, ch := range text {
		if i == 0 {
			if strings.ContainsRune("#,[]{}&*!|>'\"%@`", ch) {
				flowInd, blockInd = true, true
			}
			if ch == '?' || ch == ':' {
				flowInd = true
				if followedByWS {
					blockInd = true
				}
			}
			if ch == '-' && followedByWS {
				flowInd, blockInd = true, true
			}
		} else {
			if strings.ContainsRune(",?[]{}", ch) {
				flowInd = true
			}
			if ch == ':' {
				flowInd = true
				if followedByWS {
					blockInd = true
				}
			}
			if ch == '#' && precededByWS {
				flowInd, blockInd = true, true
			}
		}
		if isBreak(ch) {
			lineBreaks = true
		}
		if !(ch == '\n' || (ch >= 0x20 && ch <= 0x7E)) {
			// Non-ASCII printable characters count as special too: allow_unicode is off.
			special = true
		}
		switch {
		case ch == ' ':
			if i == 0 {
				leadingSpace = true
			}
			if i == len(text)-1 {
				trailingSpace = true
			}
			if prevBreak {
				breakSpace = true
			}
			prevSpace, prevBreak = true, false
		case isBreak(ch):
			if i == 0 {
				leadingBreak = true
			}
			if i == len(text)-1 {
				trailingBreak = true
			}
			if prevSpace {
				spaceBreak = true
			}
			prevSpace, prevBreak = false, true
		default:
			prevSpace, prevBreak = false, false
		}
		precededByWS = isSpaceOrBreakOrNul(ch)
		followedByWS = i+2 >= len(text) || isSpaceOrBreakOrNul(text[i+2])
	}
	a := analysis{allowFlowPlain: true, allowBlockPlain: true, allowSingleQuoted: true, allowBlockStyle: true}
	if leadingSpace || leadingBreak || trailingSpace || trailingBreak {
		a.allowFlowPlain, a.allowBlockPlain = false, false
	}
	if trailingSpace {
		a.allowBlockStyle = false
	}
	if breakSpace {
		a.allowFlowPlain, a.allowBlockPlain, a.allowSingleQuoted = false, false, false
	}
	if spaceBreak || special {
		a.allowFlowPlain, a.allowBlockPlain, a.allowSingleQuoted, a.allowBlockStyle = false, false, false, false
	}
	if lineBreaks {
		a.allowFlowPlain, a.allowBlockPlain = false, false
	}
	if flowInd {
		a.allowFlowPlain = false
	}
	if blockInd {
		a.allowBlockPlain = false
	}
	a.multiline = lineBreaks
	return a
}

// PyYAML's YAML 1.1 implicit resolvers, keyed by the first character they apply to.
// Python's "$" also matches before a final newline, hence "\n?\z".
var (
	reBool  = regexp.MustCompile(`^(?:yes|Yes|YES|no|No|NO|true|True|TRUE|false|False|FALSE|on|On|ON|off|Off|OFF)\n?\z`)
	reFloat = regexp.MustCompile(`^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+][0-9]+)?` +
		`|\.[0-9][0-9_]*(?:[eE][-+][0-9]+)?` +
		`|[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+\.[0-9_]*` +
		`|[-+]?\.(?:inf|Inf|INF)` +
		`|\.(?:nan|NaN|NAN))\n?\z`)
	reInt = regexp.MustCompile(`^(?:[-+]?0b[0-1_]+` +
		`|[-+]?0[0-7_]+` +
		`|[-+]?(?:0|[1-9][0-9_]*)` +
		`|[-+]?0x[0-9a-fA-F_]+` +
		`|[-+]?[1-9][0-9_]*(?::[0-5]?[0-9])+)\n?\z`)
	reMerge     = regexp.MustCompile(`^(?:<<)\n?\z`)
	reNull      = regexp.MustCompile(`^(?:~|null|Null|NULL|)\n?\z`)
	reTimestamp = regexp.MustCompile(`^(?:[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]` +
		`|[0-9][0-9][0-9][0-9]-[0-9][0-9]?-[0-9][0-9]?` +
		`(?:[Tt]|[ \t]+)[0-9][0-9]?` +
		`:[0-9][0-9]:[0-9][0-9](?:\.[0-9]*)?` +
		`(?:[ \t]*(?:Z|[-+][0-9][0-9]?(?::[0-9][0-9])?))?)\n?\z`)
	reValue = regexp.MustCompile(`^(?:=)\n?\z`)
)

func resolversFor(first rune, empty bool) []*regexp.Regexp {
	if empty {
		return []*regexp.Regexp{reNull}
	}
	var out []*regexp.Regexp
	if strings.ContainsRune("yYnNtTfFoO", first) {
		out = append(out, reBool)
	}
	if strings.ContainsRune("-+0123456789.", first) {
		out = append(out, reFloat)
	}
	if strings.ContainsRune("-+0123456789", first) {
		out = append(out, reInt)
	}
	if first == '<' {
		out = append(out, reMerge)
	}
	if strings.ContainsRune("~nN", first) {
		out = append(out, reNull)
	}
	if strings.ContainsRune("0123456789", first) {
		out = append(out, reTimestamp)
	}
	if first == '=' {
		out = append(out, reValue)
	}
	return out
}

// resolvesToStr reports whether s, written plain, would be read back as a string.
func resolvesToStr(s string) bool {
	var first rune
	for _, r := range s {
		first = r
		break
	}
	for _, re := range resolversFor(first, s == "") {
		if re.MatchString(s) {
			return false
		}
	}
	return true
}
