package bootscript

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// GrubEnv is what a GRUB script can reach: files on devices, and searches over them.
// Devices are GRUB device names such as "(tftp,198.18.0.1)", "(http,198.18.0.1:5248)" or
// "(hd0,gpt2)".
type GrubEnv interface {
	ReadFile(dev, path string) ([]byte, error)
	FileExists(dev, path string) bool
	// Search finds the first device whose filesystem has the file (by "file"), the UUID
	// (by "fs-uuid") or the label (by "label").
	Search(by, value string) (dev string, ok bool)
}

// Grub runs a GRUB script the way GRUB does with timeout=0: the commands at top level, then
// the default menu entry; configfile loads another script. vars are GRUB's environment on
// entry (root, prefix, net_default_mac, grub_cpu, grub_platform, shim_lock, ...).
func Grub(script string, vars map[string]string, env GrubEnv) (Action, error) {
	g := &grub{env: env, vars: map[string]string{}}
	for k, v := range vars {
		g.vars[k] = v
	}
	act, err := g.runScript(script, 0)
	if err != nil {
		return Action{Output: g.out}, err
	}
	if act == nil {
		return Action{Kind: "exit", Code: 0, Output: g.out}, errors.New("grub: the script booted nothing (GRUB would wait at its menu)")
	}
	act.Output = g.out
	return *act, nil
}

type grub struct {
	env     GrubEnv
	vars    map[string]string
	out     []string
	status  int
	kernel  string
	kdev    string
	cmdline string
	initrd  string
	chain   string
	chdev   string
}

// node is one parsed construct.
type node struct {
	kind  string // "cmd", "if", "for", "menuentry"
	words []string
	// if: conds[i] guards bodies[i]; a trailing body without cond is else.
	conds  [][]node
	bodies [][]node
	// for
	varName string
	items   []string
	body    []node
	title   string
}

type menuEntry struct {
	title string
	id    string
	body  []node
}

func (g *grub) runScript(script string, depth int) (*Action, error) {
	if depth > 8 {
		return nil, errors.New("grub: configfile nesting too deep")
	}
	toks, err := lex(script)
	if err != nil {
		return nil, err
	}
	p := &parser{toks: toks}
	nodes, err := p.list(nil)
	if err != nil {
		return nil, err
	}
	var menu []menuEntry
	if act, err := g.exec(nodes, &menu, depth); act != nil || err != nil {
		return act, err
	}
	if len(menu) == 0 {
		return nil, nil
	}
	entry := menu[0]
	if d := g.vars["default"]; d != "" {
		if n, err := strconv.Atoi(d); err == nil && n >= 0 && n < len(menu) {
			entry = menu[n]
		} else {
			for _, m := range menu {
				if m.title == d || m.id == d {
					entry = m
				}
			}
		}
	}
	g.kernel, g.initrd, g.chain = "", "", ""
	act, err := g.exec(entry.body, &menu, depth)
	if act != nil || err != nil {
		return act, err
	}
	// An entry that loaded something boots it when it ends.
	return g.boot()
}

func (g *grub) exec(nodes []node, menu *[]menuEntry, depth int) (*Action, error) {
	for _, n := range nodes {
		switch n.kind {
		case "menuentry":
			*menu = append(*menu, menuEntry{title: g.expand(n.title), id: n.varName, body: n.body})
		case "if":
			for i, body := range n.bodies {
				if i < len(n.conds) {
					if act, err := g.exec(n.conds[i], menu, depth); act != nil || err != nil {
						return act, err
					}
					if g.status != 0 {
						continue
					}
				}
				if act, err := g.exec(body, menu, depth); act != nil || err != nil {
					return act, err
				}
				break
			}
		case "for":
			var items []string
			for _, it := range n.items {
				items = append(items, strings.Fields(g.expand(it))...)
			}
			for _, it := range items {
				g.vars[n.varName] = it
				if act, err := g.exec(n.body, menu, depth); act != nil || err != nil {
					return act, err
				}
			}
		case "cmd":
			act, err := g.command(n.words, depth)
			if act != nil || err != nil {
				return act, err
			}
		}
	}
	return nil, nil
}

func (g *grub) command(raw []string, depth int) (*Action, error) {
	if len(raw) == 0 {
		return nil, nil
	}
	// Assignment form: name=value.
	if k, v, ok := strings.Cut(raw[0], "="); ok && len(raw) == 1 && isName(k) {
		g.vars[k] = g.expand(v)
		g.status = 0
		return nil, nil
	}
	args := make([]string, 0, len(raw))
	for _, w := range raw {
		args = append(args, g.expand(w))
	}
	cmd := args[0]
	args = args[1:]
	fail := func(format string, a ...any) {
		g.out = append(g.out, "error: "+fmt.Sprintf(format, a...)+".")
		g.status = 1
	}
	g.status = 0
	switch cmd {
	case "set":
		for _, a := range args {
			k, v, _ := strings.Cut(a, "=")
			g.vars[k] = v
		}
	case "unset":
		for _, a := range args {
			delete(g.vars, a)
		}
	case "echo":
		line := strings.Join(dropFlags(args), " ")
		g.out = append(g.out, line)
	case "insmod", "terminal_input", "terminal_output", "serial", "load_env", "save_env", "loadfont", "gfxmode", "true":
	case "false":
		g.status = 1
	case "[", "test":
		if cmd == "[" {
			if len(args) == 0 || args[len(args)-1] != "]" {
				fail("missing `]'")
				return nil, nil
			}
			args = args[:len(args)-1]
		}
		if !g.test(args) {
			g.status = 1
		}
	case "search", "search.file", "search.fs_uuid", "search.fs_label":
		by, set, value := "file", "root", ""
		switch cmd {
		case "search.fs_uuid":
			by = "fs-uuid"
		case "search.fs_label":
			by = "label"
		}
		for _, a := range args {
			switch {
			case a == "--file" || a == "-f":
				by = "file"
			case a == "--fs-uuid" || a == "-u":
				by = "fs-uuid"
			case a == "--label" || a == "-l":
				by = "label"
			case strings.HasPrefix(a, "--set="):
				set = strings.TrimPrefix(a, "--set=")
			case a == "--set" || a == "-s":
				set = "root"
			case strings.HasPrefix(a, "-"):
			default:
				if value == "" {
					value = a
				} else if strings.HasPrefix(cmd, "search.") {
					set = a // search.fs_uuid UUID VAR
				}
			}
		}
		if dev, ok := g.env.Search(by, value); ok {
			g.vars[set] = strings.Trim(dev, "()")
		} else {
			fail("no such device: %s", value)
		}
	case "linux", "linuxefi", "linux16":
		if len(args) == 0 {
			fail("filename expected")
			return nil, nil
		}
		dev, p := g.resolve(args[0])
		if !g.env.FileExists(dev, p) {
			fail("file `%s' not found", p)
			return nil, nil
		}
		g.kernel, g.kdev, g.cmdline = p, dev, strings.Join(args[1:], " ")
	case "initrd", "initrdefi", "initrd16":
		if len(args) == 0 {
			fail("filename expected")
			return nil, nil
		}
		if g.kernel == "" {
			fail("you need to load the kernel first")
			return nil, nil
		}
		var paths []string
		for _, a := range args {
			dev, p := g.resolve(a)
			if !g.env.FileExists(dev, p) {
				fail("file `%s' not found", p)
				return nil, nil
			}
			paths = append(paths, p)
		}
		g.initrd = strings.Join(paths, " ")
	case "chainloader":
		files := dropFlags(args)
		if len(files) == 0 {
			fail("filename expected")
			return nil, nil
		}
		dev, p := g.resolve(files[0])
		if !g.env.FileExists(dev, p) {
			fail("file `%s' not found", p)
			return nil, nil
		}
		g.chain, g.chdev = p, dev
	case "boot":
		act, err := g.boot()
		if act == nil && err == nil {
			fail("you need to load the kernel first")
		}
		return act, err
	case "configfile", "source":
		if len(args) == 0 {
			fail("filename expected")
			return nil, nil
		}
		dev, p := g.resolve(args[0])
		b, err := g.env.ReadFile(dev, p)
		if err != nil {
			fail("file `%s' not found", p)
			return nil, nil
		}
		return g.runScript(string(b), depth+1)
	case "halt", "poweroff":
		return &Action{Kind: "halt"}, nil
	case "reboot":
		return &Action{Kind: "exit", Code: 0}, nil
	case "exit":
		code := 0
		if len(args) > 0 {
			code, _ = strconv.Atoi(args[0])
		}
		return &Action{Kind: "exit", Code: code}, nil
	default:
		fail("can't find command `%s'", cmd)
	}
	return nil, nil
}

func (g *grub) boot() (*Action, error) {
	switch {
	case g.chain != "":
		return &Action{Kind: "chain", Device: "(" + g.chdev + ")", Path: g.chain}, nil
	case g.kernel != "":
		return &Action{Kind: "linux", Kernel: g.kernel, Initrd: g.initrd, Cmdline: g.cmdline, Device: "(" + g.kdev + ")"}, nil
	}
	return nil, nil
}

// resolve splits "(dev)/path" or "/path" (on $root) into a device and a path.
func (g *grub) resolve(s string) (dev, p string) {
	if strings.HasPrefix(s, "(") {
		if i := strings.Index(s, ")"); i > 0 {
			return s[1:i], s[i+1:]
		}
	}
	return g.vars["root"], s
}

func (g *grub) test(a []string) bool {
	if len(a) > 0 && a[0] == "!" {
		return !g.test(a[1:])
	}
	switch len(a) {
	case 0:
		return false
	case 1:
		return a[0] != ""
	case 2:
		switch a[0] {
		case "-z":
			return a[1] == ""
		case "-n":
			return a[1] != ""
		case "-f", "-e", "-s":
			dev, p := g.resolve(a[1])
			return g.env.FileExists(dev, p)
		}
	case 3:
		x, op, y := a[0], a[1], a[2]
		xi, e1 := strconv.Atoi(x)
		yi, e2 := strconv.Atoi(y)
		switch op {
		case "=", "==":
			return x == y
		case "!=":
			return x != y
		case "-eq":
			return e1 == nil && e2 == nil && xi == yi
		case "-ne":
			return e1 == nil && e2 == nil && xi != yi
		case "-lt":
			return e1 == nil && e2 == nil && xi < yi
		case "-gt":
			return e1 == nil && e2 == nil && xi > yi
		}
	}
	return false
}

// expand performs GRUB's quote removal, backslash escapes and variable expansion on a word.
func (g *grub) expand(w string) string {
	var b strings.Builder
	for i := 0; i < len(w); i++ {
		c := w[i]
		switch c {
		case '\\':
			if i+1 < len(w) {
				i++
				b.WriteByte(w[i])
			}
		case '\'':
			j := strings.IndexByte(w[i+1:], '\'')
			if j < 0 {
				b.WriteString(w[i+1:])
				return b.String()
			}
			b.WriteString(w[i+1 : i+1+j])
			i += j + 1
		case '"':
			i++
			for ; i < len(w) && w[i] != '"'; i++ {
				switch {
				case w[i] == '\\' && i+1 < len(w) && strings.IndexByte(`$"\`, w[i+1]) >= 0:
					i++
					b.WriteByte(w[i])
				case w[i] == '$':
					v, n := g.variable(w[i:])
					b.WriteString(v)
					i += n - 1
				default:
					b.WriteByte(w[i])
				}
			}
		case '$':
			v, n := g.variable(w[i:])
			b.WriteString(v)
			i += n - 1
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// variable expands the reference at the start of s ("$name", "${name}", "$?") and returns
// its value and the length consumed.
func (g *grub) variable(s string) (string, int) {
	if len(s) < 2 {
		return "$", 1
	}
	if s[1] == '?' {
		return strconv.Itoa(g.status), 2
	}
	if s[1] == '{' {
		if j := strings.IndexByte(s, '}'); j > 0 {
			return g.vars[s[2:j]], j + 1
		}
		return "$", 1
	}
	j := 1
	for j < len(s) && (isNameByte(s[j]) || (j > 1 && s[j] >= '0' && s[j] <= '9')) {
		j++
	}
	if j == 1 {
		return "$", 1
	}
	return g.vars[s[1:j]], j
}

func dropFlags(args []string) []string {
	var out []string
	for _, a := range args {
		if !strings.HasPrefix(a, "-") || a == "-" {
			out = append(out, a)
		}
	}
	return out
}

func isName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isNameByte(s[i]) && !(i > 0 && s[i] >= '0' && s[i] <= '9') {
			return false
		}
	}
	return true
}

func isNameByte(c byte) bool { return c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') }

// Lexing and parsing.

const (
	tokWord = iota
	tokSep  // newline or ;
	tokOpen // {
	tokClose
)

type token struct {
	kind int
	text string
	line int
}

func lex(s string) ([]token, error) {
	var toks []token
	line := 1
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == '\n':
			toks = append(toks, token{tokSep, "\n", line})
			line++
			i++
		case c == ';':
			toks = append(toks, token{tokSep, ";", line})
			i++
		case c == ' ' || c == '\t' || c == '\r':
			i++
		case c == '\\' && i+1 < len(s) && s[i+1] == '\n': // line continuation
			line++
			i += 2
		case c == '#':
			for i < len(s) && s[i] != '\n' {
				i++
			}
		case (c == '{' || c == '}') && (i+1 == len(s) || strings.IndexByte(" \t\r\n;", s[i+1]) >= 0):
			k := tokOpen
			if c == '}' {
				k = tokClose
			}
			toks = append(toks, token{k, string(c), line})
			i++
		default:
			start := i
			for i < len(s) {
				c := s[i]
				if c == '\\' && i+1 < len(s) {
					i += 2
					continue
				}
				if c == '\'' || c == '"' {
					j := strings.IndexByte(s[i+1:], c)
					if j < 0 {
						return nil, fmt.Errorf("grub script line %d: unterminated %c quote", line, c)
					}
					line += strings.Count(s[i:i+1+j], "\n")
					i += j + 2
					continue
				}
				if c == '$' && i+1 < len(s) && s[i+1] == '{' {
					if j := strings.IndexByte(s[i:], '}'); j > 0 {
						i += j + 1
						continue
					}
				}
				if strings.IndexByte(" \t\r\n;", c) >= 0 {
					break
				}
				i++
			}
			toks = append(toks, token{tokWord, s[start:i], line})
		}
	}
	return toks, nil
}

type parser struct {
	toks []token
	pos  int
}

func (p *parser) peek() *token {
	if p.pos < len(p.toks) {
		return &p.toks[p.pos]
	}
	return nil
}

// list parses commands until one of the stop words (or a closing brace) begins a command.
func (p *parser) list(stop []string) ([]node, error) {
	var out []node
	for {
		t := p.peek()
		if t == nil {
			return out, nil
		}
		switch t.kind {
		case tokSep:
			p.pos++
			continue
		case tokClose:
			return out, nil
		case tokOpen:
			return nil, fmt.Errorf("grub script line %d: unexpected {", t.line)
		}
		for _, s := range stop {
			if t.text == s {
				return out, nil
			}
		}
		n, err := p.statement()
		if err != nil {
			return nil, err
		}
		out = append(out, n)
	}
}

func (p *parser) expectWord(w string) error {
	for t := p.peek(); t != nil && t.kind == tokSep; t = p.peek() {
		p.pos++
	}
	t := p.peek()
	if t == nil || t.kind != tokWord || t.text != w {
		line := 0
		if t != nil {
			line = t.line
		}
		return fmt.Errorf("grub script line %d: expected %q", line, w)
	}
	p.pos++
	return nil
}

func (p *parser) statement() (node, error) {
	t := p.peek()
	switch t.text {
	case "if":
		p.pos++
		n := node{kind: "if"}
		for {
			cond, err := p.list([]string{"then"})
			if err != nil {
				return n, err
			}
			if err := p.expectWord("then"); err != nil {
				return n, err
			}
			body, err := p.list([]string{"elif", "else", "fi"})
			if err != nil {
				return n, err
			}
			n.conds = append(n.conds, cond)
			n.bodies = append(n.bodies, body)
			next := p.peek()
			if next == nil {
				return n, fmt.Errorf("grub script line %d: if without fi", t.line)
			}
			p.pos++
			switch next.text {
			case "elif":
				continue
			case "else":
				body, err := p.list([]string{"fi"})
				if err != nil {
					return n, err
				}
				n.bodies = append(n.bodies, body)
				return n, p.expectWord("fi")
			case "fi":
				return n, nil
			}
		}
	case "for":
		p.pos++
		v := p.peek()
		if v == nil || v.kind != tokWord {
			return node{}, fmt.Errorf("grub script line %d: for without a variable", t.line)
		}
		p.pos++
		n := node{kind: "for", varName: v.text}
		if err := p.expectWord("in"); err != nil {
			return n, err
		}
		for w := p.peek(); w != nil && w.kind == tokWord; w = p.peek() {
			n.items = append(n.items, w.text)
			p.pos++
		}
		if err := p.expectWord("do"); err != nil {
			return n, err
		}
		body, err := p.list([]string{"done"})
		if err != nil {
			return n, err
		}
		n.body = body
		return n, p.expectWord("done")
	case "menuentry", "submenu":
		p.pos++
		n := node{kind: "menuentry"}
		for w := p.peek(); w != nil && w.kind == tokWord; w = p.peek() {
			p.pos++
			switch {
			case n.title == "":
				n.title = w.text
			case w.text == "--id" || w.text == "$menuentry_id_option":
				if id := p.peek(); id != nil && id.kind == tokWord {
					n.varName = strings.Trim(id.text, `'"`)
					p.pos++
				}
			}
		}
		o := p.peek()
		if o == nil || o.kind != tokOpen {
			return n, fmt.Errorf("grub script line %d: menuentry without {", t.line)
		}
		p.pos++
		body, err := p.list(nil)
		if err != nil {
			return n, err
		}
		if c := p.peek(); c == nil || c.kind != tokClose {
			return n, fmt.Errorf("grub script line %d: menuentry without }", t.line)
		}
		p.pos++
		n.body = body
		return n, nil
	}
	n := node{kind: "cmd"}
	for w := p.peek(); w != nil && w.kind == tokWord; w = p.peek() {
		n.words = append(n.words, w.text)
		p.pos++
	}
	return n, nil
}
