package main

import (
	"context"
	"fmt"
	"io"
	"sort"
)

// imagesSub is one "maasemu images SUB" command; each registers itself in its own file.
var imagesSubs = map[string]command{}

func registerImages(c command) {
	if _, dup := imagesSubs[c.name]; dup {
		panic("maasemu: images subcommand registered twice: " + c.name)
	}
	imagesSubs[c.name] = c
}

func init() {
	register(command{
		name:    "images",
		summary: "build, import and list boot and test images",
		run: func(ctx context.Context, args []string, stdout, stderr io.Writer) error {
			if len(args) == 0 || args[0] == "-h" || args[0] == "--help" {
				fmt.Fprintln(stderr, "usage: maasemu images SUBCOMMAND [flags]")
				names := make([]string, 0, len(imagesSubs))
				for n := range imagesSubs {
					names = append(names, n)
				}
				sort.Strings(names)
				for _, n := range names {
					fmt.Fprintf(stderr, "  %-10s %s\n", n, imagesSubs[n].summary)
				}
				if len(args) == 0 {
					return &exitError{code: 2}
				}
				return nil
			}
			c, ok := imagesSubs[args[0]]
			if !ok {
				return &exitError{code: 2, err: fmt.Errorf("unknown images subcommand %q", args[0])}
			}
			return c.run(ctx, args[1:], stdout, stderr)
		},
	})
}
